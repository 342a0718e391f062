package rocmforge

// #include <rocmforge.h>
import "C"

// Batch is a list of tokens for Context.Decode, each with its position, sequence and
// whether its logits are wanted. Used by one goroutine at a time.
type Batch struct {
	ptr *C.rocmforge_batch
}

// NewBatch creates an empty batch holding up to capacity tokens (1..65536).
func NewBatch(capacity int) (*Batch, error) {
	if capacity < 0 || capacity > 1<<31-1 {
		return nil, &Error{Op: "rocmforge_batch_create", Status: ErrInvalidArgument, Message: "capacity out of range"}
	}
	var b *C.rocmforge_batch
	if err := call("rocmforge_batch_create", func() C.int {
		return C.int(C.rocmforge_batch_create(C.uint32_t(capacity), &b))
	}); err != nil {
		return nil, err
	}
	return &Batch{ptr: b}, nil
}

// Close frees the batch.
func (b *Batch) Close() {
	C.rocmforge_batch_free(b.ptr)
	b.ptr = nil
}

// Add appends a token at position pos of sequence seq; wantLogits keeps its logits for
// Context.Logits and samplers. A full batch is ErrInvalidArgument.
func (b *Batch) Add(token, pos, seq int32, wantLogits bool) error {
	return call("rocmforge_batch_add", func() C.int {
		return C.int(C.rocmforge_batch_add(b.ptr, C.int32_t(token), C.int32_t(pos), C.int32_t(seq), C.bool(wantLogits)))
	})
}

// Clear removes every token (the capacity stays).
func (b *Batch) Clear() error {
	return call("rocmforge_batch_clear", func() C.int { return C.int(C.rocmforge_batch_clear(b.ptr)) })
}

// Len is the number of tokens in the batch (0 for a closed batch).
func (b *Batch) Len() int {
	var n C.size_t
	if call("rocmforge_batch_size", func() C.int { return C.int(C.rocmforge_batch_size(b.ptr, &n)) }) != nil {
		return 0
	}
	return int(n)
}
