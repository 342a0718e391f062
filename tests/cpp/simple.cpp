// simple (C++): examples-c/simple.c through rocmforge.hpp. Loads a model, tokenizes a prompt and
// streams a greedy continuation, printing exactly what simple.c (and `rocmforge_cli -p PROMPT
// -n N`) prints.
//
//   simple_cpp MODEL.gguf [PROMPT] [N_PREDICT]
#include <rocmforge.hpp>

#include <cstdlib>
#include <iostream>
#include <string>

int main(int argc, char **argv) {
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " MODEL.gguf [PROMPT] [N_PREDICT]\n";
        return 2;
    }
    const std::string prompt = argc > 2 ? argv[2] : "The capital of France is";
    const int n_predict = argc > 3 ? std::atoi(argv[3]) : 32;
    try {
        rocmforge::Model model(argv[1]);
        rocmforge::Context ctx(model);
        rocmforge::Sampler sampler;
        sampler.greedy();

        ctx.eval(model.tokenize(prompt));
        std::cout << prompt << std::flush;
        for (int i = 0; i < n_predict; i++) {
            const std::int32_t next = sampler.sample(ctx);
            sampler.accept(next);
            if (model.is_eog(next)) {
                break;
            }
            std::cout << model.token_to_piece(next) << std::flush;
            ctx.eval(next);
        }
        std::cout << '\n';
    } catch (const rocmforge::Error &e) {
        std::cerr << "rocmforge: " << e.what() << " (status " << e.status() << ")\n";
        return 1;
    }
    return 0;
}
