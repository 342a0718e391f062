package rocmforge

import (
	"context"
	"errors"
	"os"
	"testing"
)

// A cancel request that reached the library after an evaluation's last check is pending
// there; the next evaluation must still run (the binding consumes the leftover request).
func TestLeftoverCancelRequestDoesNotCancelTheNextEval(t *testing.T) {
	path := os.Getenv("ROCMFORGE_MODEL")
	if path == "" {
		if os.Getenv("ROCMFORGE_SKIP_MODEL_TESTS") == "1" {
			t.Skip("ROCMFORGE_MODEL is not set")
		}
		t.Fatal("set ROCMFORGE_MODEL (see rocmforge_test.go)")
	}
	m, err := LoadModel(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := NewContext(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// What the watcher does when the context.Context ends just after the library's last check.
	c.requestCancel()
	c.staleCancel = true
	if err := c.Eval(context.Background(), []int32{1, 2}, 0); err != nil {
		t.Fatalf("eval after a leftover request: %v", err)
	}
	if c.staleCancel {
		t.Fatal("leftover request still marked")
	}
	if pos, _ := c.KVSeqPosMax(0); pos != 1 {
		t.Fatalf("pos max %d, want 1", pos)
	}
	// Without the bookkeeping the library would have cancelled it.
	c.requestCancel()
	if err := c.Eval(context.Background(), []int32{3}, 0); !errors.Is(err, ErrCancelled) {
		t.Fatalf("raw leftover request: %v", err)
	}
}
