package rocmforge

/*
#include <stdlib.h>
#include <rocmforge.h>
*/
import "C"

import "unsafe"

// SpecialToken names a special token for Model.SpecialToken.
type SpecialToken int32

// The special tokens a model may define.
const (
	TokenBOS SpecialToken = C.ROCMFORGE_TOKEN_BOS
	TokenEOS SpecialToken = C.ROCMFORGE_TOKEN_EOS
	TokenEOT SpecialToken = C.ROCMFORGE_TOKEN_EOT // end of turn, e.g. "<|im_end|>"
	TokenPAD SpecialToken = C.ROCMFORGE_TOKEN_PAD
	TokenUNK SpecialToken = C.ROCMFORGE_TOKEN_UNK
)

// Tokenize turns UTF-8 text into token ids. addSpecial adds BOS/EOS as the model's metadata
// asks; parseSpecial turns special-token texts such as "<|im_start|>" into their ids.
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	ctext, clen := cText(text)
	tokens := make([]int32, len(text)+2) // a byte-level vocabulary: at most a token a byte, plus BOS/EOS
	for attempt := 0; ; attempt++ {
		var n C.size_t
		st, msg := callStatus(func() C.int {
			return C.int(C.rocmforge_tokenize(m.ptr, ctext, clen, C.bool(addSpecial), C.bool(parseSpecial),
				cTokens(tokens), C.size_t(len(tokens)), &n))
		})
		switch {
		case st == OK:
			return tokens[:n], nil
		case st == ErrBufferTooSmall && attempt == 0:
			tokens = make([]int32, n)
		default:
			return nil, &Error{Op: "rocmforge_tokenize", Status: st, Message: msg}
		}
	}
}

// TokenToPiece is the bytes of one token. A piece may hold part of a UTF-8 character:
// concatenate pieces before decoding, or use Detokenize. Control tokens render only when
// special is true.
func (m *Model) TokenToPiece(token int32, special bool) ([]byte, error) {
	return twoCall("rocmforge_token_to_piece", 32, func(buf *C.char, capacity C.size_t, n *C.size_t) C.int {
		return C.int(C.rocmforge_token_to_piece(m.ptr, C.int32_t(token), C.bool(special), buf, capacity, n))
	})
}

// Detokenize turns token ids back into text (control tokens only when special is true).
func (m *Model) Detokenize(tokens []int32, special bool) (string, error) {
	b, err := twoCall("rocmforge_detokenize", 8*len(tokens)+16, func(buf *C.char, capacity C.size_t, n *C.size_t) C.int {
		return C.int(C.rocmforge_detokenize(m.ptr, cTokens(tokens), C.size_t(len(tokens)), C.bool(special), buf, capacity, n))
	})
	return string(b), err
}

// SpecialToken is the id of a special token, or ErrNotFound when the model has none.
func (m *Model) SpecialToken(which SpecialToken) (int32, error) {
	var out C.int32_t
	err := call("rocmforge_token_special", func() C.int {
		return C.int(C.rocmforge_token_special(m.ptr, C.int32_t(which), &out))
	})
	return int32(out), err
}

// IsEOG reports whether generation should stop at token (EOS, end of turn, ...). An invalid
// token or a closed model reports true, so a generation loop stops rather than runs on.
func (m *Model) IsEOG(token int32) bool {
	var out C.bool
	if call("rocmforge_token_is_eog", func() C.int {
		return C.int(C.rocmforge_token_is_eog(m.ptr, C.int32_t(token), &out))
	}) != nil {
		return true
	}
	return bool(out)
}

// ChatMessage is one turn of a conversation.
type ChatMessage struct {
	Role    string // "system", "user", "assistant", ...
	Content string
}

// ChatApply formats a conversation with the model's own chat template (ErrNoChatTemplate
// when it has none), as Hugging Face's apply_chat_template does. addGenerationPrompt
// appends the opening of the assistant's turn. Tokenize the result with parseSpecial true.
func (m *Model) ChatApply(messages []ChatMessage, addGenerationPrompt bool) (string, error) {
	return m.chatApply(nil, messages, addGenerationPrompt)
}

// ChatApplyTemplate is ChatApply with a Jinja template of the caller's.
func (m *Model) ChatApplyTemplate(template string, messages []ChatMessage, addGenerationPrompt bool) (string, error) {
	ctemplate := C.CString(template)
	defer C.free(unsafe.Pointer(ctemplate))
	return m.chatApply(ctemplate, messages, addGenerationPrompt)
}

func (m *Model) chatApply(template *C.char, messages []ChatMessage, addGenerationPrompt bool) (string, error) {
	// The arrays of string pointers live in C memory (cgo forbids passing Go memory that
	// holds pointers to Go memory).
	n := len(messages)
	size := C.size_t(n+1) * C.size_t(unsafe.Sizeof((*C.char)(nil)))
	roles := unsafe.Slice((**C.char)(C.calloc(1, size)), n+1)
	contents := unsafe.Slice((**C.char)(C.calloc(1, size)), n+1)
	defer func() {
		for i := 0; i < n; i++ {
			C.free(unsafe.Pointer(roles[i]))
			C.free(unsafe.Pointer(contents[i]))
		}
		C.free(unsafe.Pointer(&roles[0]))
		C.free(unsafe.Pointer(&contents[0]))
	}()
	total := 0
	for i, msg := range messages {
		roles[i] = C.CString(msg.Role)
		contents[i] = C.CString(msg.Content)
		total += len(msg.Role) + len(msg.Content)
	}
	b, err := twoCall("rocmforge_chat_apply", 2*total+1024, func(buf *C.char, capacity C.size_t, out *C.size_t) C.int {
		return C.int(C.rocmforge_chat_apply(m.ptr, template, &roles[0], &contents[0], C.size_t(n),
			C.bool(addGenerationPrompt), buf, capacity, out))
	})
	return string(b), err
}
