package rocmforge

// #include <rocmforge.h>
import "C"

import (
	"fmt"
	"strings"
)

// SeedRandom as a Dist seed asks for a seed from OS entropy.
const SeedRandom = ^uint64(0)

// Stage is one stage of a sampler chain, made by Greedy, Dist, Temperature, TopK, TopP, MinP
// or Penalties.
type Stage struct {
	name string
	add  func(*C.rocmforge_sampler) C.int
}

func (s Stage) String() string { return s.name }

// Greedy picks the most likely token; it ends a chain.
func Greedy() Stage {
	return Stage{"greedy", func(p *C.rocmforge_sampler) C.int { return C.int(C.rocmforge_sampler_add_greedy(p)) }}
}

// Dist draws a token from the distribution with a seeded generator (SeedRandom: from OS
// entropy); it ends a chain.
func Dist(seed uint64) Stage {
	return Stage{fmt.Sprintf("dist(%d)", seed), func(p *C.rocmforge_sampler) C.int {
		return C.int(C.rocmforge_sampler_add_dist(p, C.uint64_t(seed)))
	}}
}

// Temperature divides the logits by t.
func Temperature(t float32) Stage {
	return Stage{fmt.Sprintf("temperature(%g)", t), func(p *C.rocmforge_sampler) C.int {
		return C.int(C.rocmforge_sampler_add_temperature(p, C.float(t)))
	}}
}

// TopK keeps the k most likely tokens (k <= 0: off).
func TopK(k int32) Stage {
	return Stage{fmt.Sprintf("top_k(%d)", k), func(p *C.rocmforge_sampler) C.int {
		return C.int(C.rocmforge_sampler_add_top_k(p, C.int32_t(k)))
	}}
}

// TopP keeps the most likely tokens whose probabilities add up to p (and at least minKeep).
func TopP(prob float32, minKeep uint32) Stage {
	return Stage{fmt.Sprintf("top_p(%g, %d)", prob, minKeep), func(p *C.rocmforge_sampler) C.int {
		return C.int(C.rocmforge_sampler_add_top_p(p, C.float(prob), C.uint32_t(minKeep)))
	}}
}

// MinP keeps tokens at least prob times as likely as the best one (and at least minKeep).
func MinP(prob float32, minKeep uint32) Stage {
	return Stage{fmt.Sprintf("min_p(%g, %d)", prob, minKeep), func(p *C.rocmforge_sampler) C.int {
		return C.int(C.rocmforge_sampler_add_min_p(p, C.float(prob), C.uint32_t(minKeep)))
	}}
}

// Penalties penalises tokens among the last lastN accepted ones: repeat (1 = off) divides
// positive logits and multiplies negative ones; frequency is subtracted per occurrence,
// presence once per distinct token.
func Penalties(lastN uint32, repeat, frequency, presence float32) Stage {
	return Stage{fmt.Sprintf("penalties(%d, %g, %g, %g)", lastN, repeat, frequency, presence), func(p *C.rocmforge_sampler) C.int {
		return C.int(C.rocmforge_sampler_add_penalties(p, C.uint32_t(lastN), C.float(repeat), C.float(frequency), C.float(presence)))
	}}
}

// Sampler is a chain of stages that picks the next token from a context's logits. Used by
// one goroutine at a time.
type Sampler struct {
	ptr *C.rocmforge_sampler
}

// NewSampler creates a sampler chain with the given stages, in the order they run; the last
// should be Greedy or Dist (more can be added with Add).
func NewSampler(stages ...Stage) (*Sampler, error) {
	var p *C.rocmforge_sampler
	if err := call("rocmforge_sampler_create", func() C.int { return C.int(C.rocmforge_sampler_create(&p)) }); err != nil {
		return nil, err
	}
	s := &Sampler{ptr: p}
	if err := s.Add(stages...); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Add appends stages to the chain.
func (s *Sampler) Add(stages ...Stage) error {
	for _, stage := range stages {
		op := "rocmforge_sampler_add_" + strings.SplitN(stage.name, "(", 2)[0]
		if err := call(op, func() C.int { return stage.add(s.ptr) }); err != nil {
			return err
		}
	}
	return nil
}

// Close frees the sampler.
func (s *Sampler) Close() {
	C.rocmforge_sampler_free(s.ptr)
	s.ptr = nil
}

// Sample picks a token from the logits of token index of c's last batch (-1: the last that
// asked for logits). It does not accept it: call Accept with the token you keep.
func (s *Sampler) Sample(c *Context, index int32) (int32, error) {
	var out C.int32_t
	err := c.call("rocmforge_sampler_sample", func() C.int {
		return C.int(C.rocmforge_sampler_sample(s.ptr, c.ptr, C.int32_t(index), &out))
	})
	return int32(out), err
}

// Accept records a token appended to the sequence (for the penalties).
func (s *Sampler) Accept(token int32) error {
	return call("rocmforge_sampler_accept", func() C.int { return C.int(C.rocmforge_sampler_accept(s.ptr, C.int32_t(token))) })
}

// Reset forgets accepted tokens and restarts the random generator from its seed.
func (s *Sampler) Reset() error {
	return call("rocmforge_sampler_reset", func() C.int { return C.int(C.rocmforge_sampler_reset(s.ptr)) })
}
