# Compile and link flags from the installed library's pkg-config file. Point PKG_CONFIG_PATH
# at PREFIX/lib/pkgconfig (scripts/install.sh PREFIX). LINK=static links librocmforge.a,
# LINK=shared (default) librocmforge.so with an rpath to it.
.DEFAULT_GOAL := all
PKG_CONFIG ?= pkg-config
LINK ?= shared
OUT ?= build
CFLAGS ?= -O1 -g
override CFLAGS += -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -pedantic
override CFLAGS += $(shell $(PKG_CONFIG) --cflags rocmforge)
LIBDIR := $(shell $(PKG_CONFIG) --variable=libdir rocmforge)
ifeq ($(LINK),static)
override LDLIBS += $(LIBDIR)/librocmforge.a $(shell $(PKG_CONFIG) --variable=libs_private rocmforge)
else
override LDLIBS += $(shell $(PKG_CONFIG) --libs rocmforge) -Wl,-rpath,$(LIBDIR) -lpthread -lm
endif

$(OUT):
	mkdir -p $(OUT)
