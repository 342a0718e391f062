package rocmforge_test

// Tests against the real library and the SmolLM2-135M-Instruct Q4_1 model named by
// ROCMFORGE_MODEL (scripts/fetch-models.sh puts it in .cache/models). Without it every test
// that needs the model fails, unless ROCMFORGE_SKIP_MODEL_TESTS=1 asks to skip them.
// ROCMFORGE_SIMPLE may name a built examples-c/simple: the greedy test then compares with
// what that C program prints (tests/bindings.rs sets it).

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	rocmforge "github.com/rocmforge/rocmforge-go"
)

const prompt = "The capital of France is"

// What examples-c/simple.c prints for prompt and 16 tokens with SmolLM2-135M-Instruct Q4_1
// (tests/ffi_c.rs checks that the Rust library's greedy loop gives the same).
const simpleOutput = "The capital of France is Paris.\n\nThe United States has a population of approximately 311\n"

var (
	sharedOnce  sync.Once
	sharedModel *rocmforge.Model
	sharedErr   error
)

func modelPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("ROCMFORGE_MODEL")
	if path == "" {
		if os.Getenv("ROCMFORGE_SKIP_MODEL_TESTS") == "1" {
			t.Skip("ROCMFORGE_MODEL is not set")
		}
		t.Fatal("set ROCMFORGE_MODEL to SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-models.sh), " +
			"or ROCMFORGE_SKIP_MODEL_TESTS=1 to skip the model tests")
	}
	return path
}

// model is one model shared by the tests (a model is immutable and thread-safe).
func model(t *testing.T) *rocmforge.Model {
	t.Helper()
	path := modelPath(t)
	sharedOnce.Do(func() { sharedModel, sharedErr = rocmforge.LoadModel(path, nil) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedModel
}

func newContext(t *testing.T, m *rocmforge.Model, params *rocmforge.ContextParams) *rocmforge.Context {
	t.Helper()
	c, err := rocmforge.NewContext(m, params)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newSampler(t *testing.T, stages ...rocmforge.Stage) *rocmforge.Sampler {
	t.Helper()
	s, err := rocmforge.NewSampler(stages...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// generate is examples-c/simple.c's loop: the prompt, then up to n sampled pieces.
func generate(t *testing.T, m *rocmforge.Model, c *rocmforge.Context, s *rocmforge.Sampler, text string, n int) string {
	t.Helper()
	ctx := context.Background()
	tokens, err := m.Tokenize(text, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Eval(ctx, tokens, 0); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	out.WriteString(text)
	for i := 0; i < n; i++ {
		next, err := s.Sample(c, -1)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Accept(next); err != nil {
			t.Fatal(err)
		}
		if m.IsEOG(next) {
			break
		}
		piece, err := m.TokenToPiece(next, false)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(piece)
		if err := c.Eval(ctx, []int32{next}, 0); err != nil {
			t.Fatal(err)
		}
	}
	out.WriteString("\n")
	return out.String()
}

func TestGreedyTextMatchesTheCExample(t *testing.T) {
	m := model(t)
	got := generate(t, m, newContext(t, m, nil), newSampler(t, rocmforge.Greedy()), prompt, 16)
	want := simpleOutput
	if exe := os.Getenv("ROCMFORGE_SIMPLE"); exe != "" {
		out, err := exec.Command(exe, modelPath(t), prompt, "16").Output()
		if err != nil {
			t.Fatalf("%s: %v", exe, err)
		}
		want = string(out)
	}
	if got != want {
		t.Fatalf("greedy text\n got %q\nwant %q", got, want)
	}
}

func TestMissingFileIsAnIOErrorWithAMessage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.gguf")
	m, err := rocmforge.LoadModel(path, nil)
	if m != nil || err == nil {
		t.Fatalf("LoadModel(%q) = %v, %v", path, m, err)
	}
	if !errors.Is(err, rocmforge.ErrIO) || errors.Is(err, rocmforge.ErrInvalidModel) {
		t.Fatalf("not (only) ErrIO: %v", err)
	}
	var e *rocmforge.Error
	if !errors.As(err, &e) || e.Op != "rocmforge_model_load" || e.Status != rocmforge.ErrIO ||
		!strings.Contains(e.Message, "missing.gguf") {
		t.Fatalf("error fields: %#v", e)
	}
	if !strings.Contains(err.Error(), e.Message) {
		t.Fatalf("Error() lacks the message: %q", err.Error())
	}
}

func TestStatusesAreSentinelErrors(t *testing.T) {
	m := model(t)
	if _, err := m.TokenToPiece(-1, false); !errors.Is(err, rocmforge.ErrInvalidToken) {
		t.Fatalf("token -1: %v", err)
	}
	if _, err := m.Meta("no.such.key"); !errors.Is(err, rocmforge.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	c := newContext(t, m, nil)
	if err := c.Eval(context.Background(), []int32{1}, 7); !errors.Is(err, rocmforge.ErrInvalidSequence) {
		t.Fatalf("sequence 7: %v", err)
	}
	if rocmforge.ErrBusy.String() == "" || rocmforge.OK.String() == rocmforge.ErrBusy.String() {
		t.Fatal("status strings")
	}
	var closed rocmforge.Model
	if _, err := closed.Tokenize("x", false, false); !errors.Is(err, rocmforge.ErrNullPointer) {
		t.Fatalf("closed model: %v", err)
	}
}

// longPrompt is a prompt of a few hundred tokens: an evaluation that takes a while.
func longPrompt(t *testing.T, m *rocmforge.Model) []int32 {
	t.Helper()
	tokens, err := m.Tokenize(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 40), true, false)
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

func TestCancelThroughContextContext(t *testing.T) {
	m := model(t)
	c := newContext(t, m, nil)
	first, err := m.Tokenize(prompt, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Eval(context.Background(), first, 0); err != nil {
		t.Fatal(err)
	}

	// Done before the call: nothing reaches the library.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Eval(done, []int32{42}, 0); !errors.Is(err, rocmforge.ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before: %v", err)
	}

	// Done during a long evaluation: rocmforge_context_cancel stops it within a layer.
	long := longPrompt(t, m)
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(30*time.Millisecond, cancel)
	defer timer.Stop()
	start := time.Now()
	err = c.Eval(ctx, long, 0)
	elapsed := time.Since(start)
	if !errors.Is(err, rocmforge.ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled during (after %v): %v", elapsed, err)
	}
	if pos, err := c.KVSeqPosMax(0); err != nil || pos != int32(len(first)-1) {
		t.Fatalf("KV cache changed by a cancelled eval: pos max %d, %v", pos, err)
	}
	// No sliding window: every layer holds the sequence from its first position.
	if pos, err := c.KVSeqPosMin(0); err != nil || pos != 0 {
		t.Fatalf("pos min %d, %v", pos, err)
	}

	// The context goes on as if the cancelled call had not happened.
	if err := c.Eval(context.Background(), long[:8], 0); err != nil {
		t.Fatalf("eval after the cancel: %v", err)
	}
	t.Logf("cancelled a %d-token eval after %v", len(long), elapsed)
}

func TestDeadlineCancels(t *testing.T) {
	m := model(t)
	c := newContext(t, m, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := c.Eval(ctx, longPrompt(t, m), 0)
	if !errors.Is(err, rocmforge.ErrCancelled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	if pos, _ := c.KVSeqPosMax(0); pos != -1 {
		t.Fatalf("cache not empty after a cancelled first eval: %d", pos)
	}
}

func TestProgressAndLogCallbacks(t *testing.T) {
	path := modelPath(t)

	var mu sync.Mutex
	var global []string
	if err := rocmforge.SetLogger(func(level rocmforge.LogLevel, msg string) {
		mu.Lock()
		defer mu.Unlock()
		global = append(global, level.String()+": "+msg)
	}); err != nil {
		t.Fatal(err)
	}
	defer rocmforge.SetLogger(nil)

	var fractions []float32
	m, err := rocmforge.LoadModel(path, &rocmforge.ModelParams{
		Progress: func(f float32) bool { fractions = append(fractions, f); return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if len(fractions) < 2 || fractions[len(fractions)-1] != 1 {
		t.Fatalf("progress: %v", fractions)
	}
	for i := 1; i < len(fractions); i++ {
		if fractions[i] < fractions[i-1] {
			t.Fatalf("progress went backwards: %v", fractions)
		}
	}
	mu.Lock()
	if len(global) == 0 {
		t.Fatal("the process-wide logger heard nothing of the load")
	}
	t.Logf("global log: %q", global)
	mu.Unlock()

	// Returning false cancels the load; a panic cancels it and comes back out of LoadModel.
	_, err = rocmforge.LoadModel(path, &rocmforge.ModelParams{Progress: func(float32) bool { return false }})
	if !errors.Is(err, rocmforge.ErrCancelled) {
		t.Fatalf("progress returning false: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the callback's panic", r)
			}
		}()
		rocmforge.LoadModel(path, &rocmforge.ModelParams{Progress: func(float32) bool { panic("boom") }})
		t.Fatal("LoadModel returned after the progress function panicked")
	}()

	// A context's own logger takes its messages instead of the process-wide one (at debug,
	// the eval line).
	c := newContext(t, m, nil)
	if err := c.SetLogLevel(rocmforge.LogDebug); err != nil {
		t.Fatal(err)
	}
	var local []string
	if err := c.SetLogger(func(level rocmforge.LogLevel, msg string) { local = append(local, msg) }); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	before := len(global)
	mu.Unlock()
	if err := c.Eval(context.Background(), []int32{1, 2, 3}, 0); err != nil {
		t.Fatal(err)
	}
	if len(local) == 0 {
		t.Fatal("the context's logger heard nothing of the eval")
	}
	mu.Lock()
	if len(global) != before {
		t.Fatalf("context messages reached the process-wide logger: %q", global[before:])
	}
	mu.Unlock()
	if err := c.SetLogger(nil); err != nil {
		t.Fatal(err)
	}

	// A panic in a context's logger comes out of the call that logged, after the library
	// has returned; the context stays usable.
	if err := c.SetLogger(func(rocmforge.LogLevel, string) { panic("logger boom") }); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if r := recover(); r != "logger boom" {
				t.Fatalf("recovered %v, want the logger's panic", r)
			}
		}()
		c.Eval(context.Background(), []int32{4}, 0)
		t.Fatal("Eval returned after its logger panicked")
	}()
	if err := c.SetLogger(nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Eval(context.Background(), []int32{5}, 0); err != nil {
		t.Fatalf("eval after the logger's panic: %v", err)
	}
}

// The per-eval debug line: off by default, on with a process-wide or a context's LogDebug; a
// context at LogError hears nothing.
func TestLogLevels(t *testing.T) {
	m := model(t)
	var mu sync.Mutex
	count := map[rocmforge.LogLevel]int{}
	if err := rocmforge.SetLogger(func(level rocmforge.LogLevel, msg string) {
		mu.Lock()
		defer mu.Unlock()
		count[level]++
	}); err != nil {
		t.Fatal(err)
	}
	defer rocmforge.SetLogger(nil)
	defer rocmforge.SetLogLevel(rocmforge.LogInfo)
	debugLines := func() int { mu.Lock(); defer mu.Unlock(); return count[rocmforge.LogDebug] }

	c := newContext(t, m, &rocmforge.ContextParams{NCtx: 32})
	mu.Lock()
	if count[rocmforge.LogInfo] != 1 {
		t.Fatalf("want the new context's info line, heard %v", count)
	}
	mu.Unlock()
	eval := func(tok int32) {
		t.Helper()
		if err := c.Eval(context.Background(), []int32{tok}, 0); err != nil {
			t.Fatal(err)
		}
	}
	eval(1)
	if n := debugLines(); n != 0 {
		t.Fatalf("debug lines by default: %d", n)
	}
	if err := rocmforge.SetLogLevel(rocmforge.LogDebug); err != nil {
		t.Fatal(err)
	}
	eval(2)
	if n := debugLines(); n != 1 {
		t.Fatalf("process-wide debug: %d debug lines, want 1", n)
	}
	if err := c.SetLogLevel(rocmforge.LogError); err != nil {
		t.Fatal(err)
	}
	eval(3)
	if n := debugLines(); n != 1 {
		t.Fatalf("a context at error level logged: %d debug lines, want 1", n)
	}
	if err := rocmforge.SetLogLevel(rocmforge.LogInfo); err != nil {
		t.Fatal(err)
	}
	if err := c.SetLogLevel(rocmforge.LogDebug); err != nil {
		t.Fatal(err)
	}
	eval(4)
	if n := debugLines(); n != 2 {
		t.Fatalf("context debug: %d debug lines, want 2", n)
	}
	if err := rocmforge.SetLogLevel(rocmforge.LogGlobal); !errors.Is(err, rocmforge.ErrInvalidArgument) {
		t.Fatalf("process-wide LogGlobal: %v", err)
	}
}

func TestTextAndChat(t *testing.T) {
	m := model(t)
	tokens, err := m.Tokenize("Hello, world!", false, false)
	if err != nil || len(tokens) == 0 {
		t.Fatal(tokens, err)
	}
	text, err := m.Detokenize(tokens, false)
	if err != nil || text != "Hello, world!" {
		t.Fatalf("round trip: %q, %v", text, err)
	}
	var pieces []byte
	for _, tok := range tokens {
		p, err := m.TokenToPiece(tok, false)
		if err != nil {
			t.Fatal(err)
		}
		pieces = append(pieces, p...)
	}
	if string(pieces) != "Hello, world!" {
		t.Fatalf("pieces: %q", pieces)
	}
	long := strings.Repeat("ab", 5000)
	if back, err := m.Tokenize(long, false, false); err != nil || len(back) == 0 {
		t.Fatal(err)
	}
	if empty, err := m.Tokenize("", false, false); err != nil || len(empty) != 0 {
		t.Fatalf("empty text: %v, %v", empty, err)
	}
	eot, err := m.SpecialToken(rocmforge.TokenEOT)
	if err != nil || !m.IsEOG(eot) {
		t.Fatalf("EOT %d: %v", eot, err)
	}
	if arch, err := m.Architecture(); err != nil || arch != "llama" {
		t.Fatalf("architecture %q: %v", arch, err)
	}
	if v, err := m.Meta("general.architecture"); err != nil || v != "llama" {
		t.Fatalf("meta %q: %v", v, err)
	}
	if m.NVocab() != 49152 || m.NLayer() != 30 {
		t.Fatalf("n_vocab %d, n_layer %d", m.NVocab(), m.NLayer())
	}

	chat, err := m.ChatApply([]rocmforge.ChatMessage{{Role: "user", Content: "What is 2+2?"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(chat, "<|im_start|>user\nWhat is 2+2?<|im_end|>") ||
		!strings.HasSuffix(chat, "<|im_start|>assistant\n") {
		t.Fatalf("chat: %q", chat)
	}
	custom, err := m.ChatApplyTemplate("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}",
		[]rocmforge.ChatMessage{{"a", "x"}, {"b", "y"}}, false)
	if err != nil || custom != "[a] x\n[b] y\n" {
		t.Fatalf("custom template: %q, %v", custom, err)
	}
	if _, err := m.ChatApplyTemplate("{{ raise_exception('no') }}", nil, false); !errors.Is(err, rocmforge.ErrTemplate) {
		t.Fatalf("raise_exception: %v", err)
	}
}

func TestSeededSamplingRepeatsAndBadChainsFail(t *testing.T) {
	m := model(t)
	chain := func() []rocmforge.Stage {
		return []rocmforge.Stage{rocmforge.Penalties(64, 1.1, 0, 0), rocmforge.TopK(40),
			rocmforge.TopP(0.9, 1), rocmforge.MinP(0.05, 1), rocmforge.Temperature(0.8), rocmforge.Dist(7)}
	}
	a := generate(t, m, newContext(t, m, nil), newSampler(t, chain()...), prompt, 8)
	b := generate(t, m, newContext(t, m, nil), newSampler(t, chain()...), prompt, 8)
	if a != b {
		t.Fatalf("same seed, different text: %q vs %q", a, b)
	}
	s := newSampler(t, rocmforge.Greedy())
	err := s.Add(rocmforge.TopK(5))
	var e *rocmforge.Error
	if !errors.As(err, &e) || e.Op != "rocmforge_sampler_add_top_k" || e.Status != rocmforge.ErrInvalidArgument {
		t.Fatalf("stage after greedy: %v", err)
	}
}

func TestStateSaveAndLoad(t *testing.T) {
	m := model(t)
	c := newContext(t, m, nil)
	tokens, _ := m.Tokenize(prompt, true, true)
	ctx := context.Background()
	if err := c.Eval(ctx, tokens, 0); err != nil {
		t.Fatal(err)
	}
	state, err := c.StateSave(-1)
	if err != nil || len(state) == 0 {
		t.Fatal(err)
	}
	want, _ := c.Logits(-1)
	if err := c.Eval(ctx, []int32{100, 200}, 0); err != nil {
		t.Fatal(err)
	}

	other := newContext(t, m, nil)
	if err := other.StateLoad(-1, state); err != nil {
		t.Fatal(err)
	}
	got, err := other.Logits(-1)
	if err != nil || len(got) != m.NVocab() {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("logit %d: %v after restore, %v before", i, got[i], want[i])
		}
	}
	file := filepath.Join(t.TempDir(), "state.bin")
	if err := c.StateSaveFile(0, file); err != nil {
		t.Fatal(err)
	}
	if err := other.StateLoadFile(0, file); err != nil {
		t.Fatal(err)
	}
	if pos, _ := other.KVSeqPosMax(0); pos != int32(len(tokens)+1) {
		t.Fatalf("restored sequence ends at %d", pos)
	}
	state[len(state)/2] ^= 1
	if err := other.StateLoad(-1, state); !errors.Is(err, rocmforge.ErrInvalidArgument) {
		t.Fatalf("flipped bit: %v", err)
	}
}

func TestBatchDecodeMatchesEval(t *testing.T) {
	m := model(t)
	tokens, _ := m.Tokenize(prompt, true, true)
	ctx := context.Background()

	alone := newContext(t, m, nil)
	if err := alone.Eval(ctx, tokens, 0); err != nil {
		t.Fatal(err)
	}
	want, _ := alone.Logits(-1)

	c := newContext(t, m, &rocmforge.ContextParams{NSeqMax: 2, NCtx: 256})
	if _, _, nSeq, err := c.Sizes(); err != nil || nSeq != 2 {
		t.Fatalf("n_seq_max %d: %v", nSeq, err)
	}
	b, err := rocmforge.NewBatch(2 * len(tokens))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for seq := int32(0); seq < 2; seq++ {
		for i, tok := range tokens {
			if err := b.Add(tok, int32(i), seq, i == len(tokens)-1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if b.Len() != 2*len(tokens) {
		t.Fatalf("batch holds %d", b.Len())
	}
	if err := c.Decode(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, index := range []int32{int32(len(tokens) - 1), int32(2*len(tokens) - 1)} {
		got, err := c.Logits(index)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if diff := got[i] - want[i]; diff > 1e-3 || diff < -1e-3 {
				t.Fatalf("batch index %d logit %d: %v, alone %v", index, i, got[i], want[i])
			}
		}
	}
}

func TestVersion(t *testing.T) {
	if rocmforge.VersionNumber() != rocmforge.HeaderVersionNumber {
		t.Fatalf("library %d, header %d", rocmforge.VersionNumber(), rocmforge.HeaderVersionNumber)
	}
	if !strings.HasPrefix(rocmforge.Version(), "0.") {
		t.Fatalf("version %q", rocmforge.Version())
	}
	n, err := rocmforge.DeviceCount()
	if err != nil || (n > 0 && !rocmforge.GPUBuiltIn()) {
		t.Fatalf("%d devices, built in %v: %v", n, rocmforge.GPUBuiltIn(), err)
	}
	if _, err := rocmforge.DeviceName(n); !errors.Is(err, rocmforge.ErrNotFound) {
		t.Fatalf("device %d of %d: %v", n, n, err)
	}
}

func TestEstimateMemory(t *testing.T) {
	est, err := rocmforge.EstimateMemory(modelPath(t), &rocmforge.ContextParams{NCtx: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if est.Weights == 0 || est.KVCache == 0 || est.Total != est.Weights+est.KVCache+est.Compute {
		t.Fatalf("%+v", est)
	}
	if est.Weights != model(t).SizeBytes() {
		t.Fatalf("weights %d, model %d bytes", est.Weights, model(t).SizeBytes())
	}
}

// Quantize writes a file that loads and generates, reports each tensor, refuses a quantized
// input unless asked, and a cancel from the progress function leaves no file behind.
func TestQuantize(t *testing.T) {
	path := modelPath(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "smollm2-q8_0.gguf")

	// The test model is Q4_1: requantizing must be asked for.
	err := rocmforge.Quantize(path, out, &rocmforge.QuantizeParams{Type: "Q8_0"})
	if !errors.Is(err, rocmforge.ErrInvalidArgument) {
		t.Fatalf("quantized input without AllowRequantize: %v", err)
	}

	var calls [][2]int
	err = rocmforge.Quantize(path, out, &rocmforge.QuantizeParams{
		Type:            "q8_0",
		AllowRequantize: true,
		Progress: func(done, total int) bool {
			calls = append(calls, [2]int{done, total})
			return true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	total := calls[len(calls)-1][1]
	if len(calls) != total || calls[0] != [2]int{1, total} || calls[len(calls)-1][0] != total {
		t.Fatalf("progress: %v", calls)
	}
	m, err := rocmforge.LoadModel(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.NVocab() != model(t).NVocab() {
		t.Fatalf("vocabulary %d, the input's %d", m.NVocab(), model(t).NVocab())
	}
	// Q8_0 is close to the Q4_1 input: the greedy answer is still Paris.
	got := generate(t, m, newContext(t, m, nil), newSampler(t, rocmforge.Greedy()), prompt, 4)
	if !strings.HasPrefix(got, prompt+" Paris") {
		t.Fatalf("greedy text of the Q8_0 file: %q", got)
	}

	// Cancelling after the first tensor fails with ErrCancelled and leaves no file.
	cancelled := filepath.Join(dir, "cancelled.gguf")
	err = rocmforge.Quantize(path, cancelled, &rocmforge.QuantizeParams{
		Type:            "q8_0",
		AllowRequantize: true,
		Progress:        func(done, total int) bool { return done < 1 },
	})
	if !errors.Is(err, rocmforge.ErrCancelled) {
		t.Fatalf("progress returning false: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "smollm2-q8_0.gguf" {
		t.Fatalf("files left after the cancelled quantize: %v", entries)
	}

	// A panic in the progress function cancels too and comes back out of Quantize.
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the callback's panic", r)
			}
		}()
		rocmforge.Quantize(path, cancelled, &rocmforge.QuantizeParams{
			Type:            "q8_0",
			AllowRequantize: true,
			Progress:        func(int, int) bool { panic("boom") },
		})
		t.Fatal("Quantize returned after the progress function panicked")
	}()
	if _, err := os.Stat(cancelled); !os.IsNotExist(err) {
		t.Fatalf("a file after the panicking quantize: %v", err)
	}
}
