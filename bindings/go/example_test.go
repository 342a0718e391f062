package rocmforge_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	rocmforge "github.com/rocmforge/rocmforge-go"
)

// A greedy continuation of a prompt, stopped after a time limit (the evaluation in flight is
// cancelled through rocmforge_context_cancel).
func Example() {
	model, err := rocmforge.LoadModel("SmolLM2-135M-Instruct.Q4_1.gguf", nil)
	if err != nil {
		var e *rocmforge.Error
		if errors.As(err, &e) && e.Status == rocmforge.ErrIO {
			fmt.Fprintln(os.Stderr, "cannot read the model:", e.Message)
		}
		return
	}
	defer model.Close()
	c, err := rocmforge.NewContext(model, &rocmforge.ContextParams{NThreads: 2})
	if err != nil {
		return
	}
	defer c.Close()
	sampler, err := rocmforge.NewSampler(rocmforge.Greedy())
	if err != nil {
		return
	}
	defer sampler.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tokens, _ := model.Tokenize("The capital of France is", true, true)
	for i := 0; i < 32; i++ {
		if err := c.Eval(ctx, tokens, 0); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				fmt.Println("\n(out of time)")
			}
			return
		}
		next, _ := sampler.Sample(c, -1)
		_ = sampler.Accept(next)
		if model.IsEOG(next) {
			break
		}
		piece, _ := model.TokenToPiece(next, false)
		os.Stdout.Write(piece)
		tokens = []int32{next}
	}
	fmt.Println()
}

// A chat prompt in the model's own template, sampled with a seeded chain.
func ExampleModel_ChatApply() {
	model, err := rocmforge.LoadModel("SmolLM2-135M-Instruct.Q4_1.gguf", nil)
	if err != nil {
		return
	}
	defer model.Close()
	prompt, err := model.ChatApply([]rocmforge.ChatMessage{{Role: "user", Content: "Hello!"}}, true)
	if err != nil {
		return
	}
	tokens, _ := model.Tokenize(prompt, false, true) // the template has the special tokens
	sampler, _ := rocmforge.NewSampler(rocmforge.TopK(40), rocmforge.TopP(0.95, 1),
		rocmforge.Temperature(0.7), rocmforge.Dist(42))
	defer sampler.Close()
	fmt.Println(len(tokens) > 0)
}
