// Command simple loads a model, tokenizes a prompt and streams a greedy continuation: the Go
// twin of examples-c/simple.c, printing exactly what it prints.
//
//	simple MODEL.gguf [PROMPT] [N_PREDICT]
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"

	rocmforge "github.com/rocmforge/rocmforge-go"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, "usage: %s MODEL.gguf [PROMPT] [N_PREDICT]\n", os.Args[0])
		os.Exit(2)
	}
	prompt := "The capital of France is"
	if len(os.Args) > 2 {
		prompt = os.Args[2]
	}
	nPredict := 32
	if len(os.Args) > 3 {
		n, err := strconv.Atoi(os.Args[3])
		if err != nil {
			fmt.Fprintf(os.Stderr, "N_PREDICT: %v\n", err)
			os.Exit(2)
		}
		nPredict = n
	}
	// Ctrl-C cancels the evaluation in flight (rocmforge_context_cancel) and ends the program.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1], prompt, nPredict); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path, prompt string, nPredict int) error {
	model, err := rocmforge.LoadModel(path, nil)
	if err != nil {
		return err
	}
	defer model.Close()
	c, err := rocmforge.NewContext(model, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	sampler, err := rocmforge.NewSampler(rocmforge.Greedy())
	if err != nil {
		return err
	}
	defer sampler.Close()

	tokens, err := model.Tokenize(prompt, true, true)
	if err != nil {
		return err
	}
	if err := c.Eval(ctx, tokens, 0); err != nil {
		return err
	}
	os.Stdout.WriteString(prompt)
	for i := 0; i < nPredict; i++ {
		next, err := sampler.Sample(c, -1)
		if err != nil {
			return err
		}
		if err := sampler.Accept(next); err != nil {
			return err
		}
		if model.IsEOG(next) {
			break
		}
		piece, err := model.TokenToPiece(next, false)
		if err != nil {
			return err
		}
		os.Stdout.Write(piece)
		if err := c.Eval(ctx, []int32{next}, 0); err != nil {
			return err
		}
	}
	os.Stdout.WriteString("\n")
	return nil
}
