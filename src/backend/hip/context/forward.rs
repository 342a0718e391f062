//! The kernels of one forward pass, queued on the context's stream.
//!
//! Per layer: RMSNorm(+int8 quantize) → Q|K|V product (+ RoPE and the KV-cache write in its
//! last step) → attention (+ quantize) → output product + residual → RMSNorm → gate|up product
//! → SwiGLU (+quantize) → down product + residual. Batches of up to 8 tokens use the quantized
//! mat-vec kernels; larger ones dequantize each weight to f16 and multiply through BLAS, with
//! RoPE / KV write and the tiled prefill attention as kernels of their own.

use super::{
    GpuContext, MATVEC_MAX_TOKENS, MAX_STEP_TOKENS, META_CELL, META_CELL_HI, META_CELL_LO,
    META_N_CELLS, META_POS, META_RING_CELL, META_RING_FIRST, META_RING_HI, META_RING_LO, META_ROWS,
    META_SEQ, META_TOKENS,
};
use crate::backend::hip::device::check;
use crate::backend::hip::device::DeviceBuffer;
use crate::backend::hip::ffi;
use crate::backend::hip::model::{GpuMatrix, Projection};
use crate::cancel::CancelFlag;
use crate::kv_cache::KvType;
use crate::model::{Activation, RopeStyle};
use crate::quant::{Format, GgmlType};
use crate::Result;
use std::ffi::c_void;

impl GpuContext {
    /// Queues the forward pass of `n` tokens whose metadata is on the device: embeddings,
    /// every layer, and the logits of the first `n_out` rows of the logit-row list.
    pub(super) fn enqueue_forward(
        &self,
        n: usize,
        n_out: usize,
        cancel: Option<&CancelFlag>,
    ) -> Result<()> {
        let model = &*self.model;
        let hp = &model.hparams;
        let (d, q_dim, kv_dim, ff) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff);
        let qkv_w = q_dim + 2 * kv_dim;
        let st = self.stream.raw();
        let m = MAX_STEP_TOKENS;
        let meta = |k: usize| self.s.meta.at::<i32>(k * m);
        let null = std::ptr::null::<i32>();
        let nullf = std::ptr::null::<f32>();
        // As the CPU's attention shape has it.
        let att_scale = hp
            .attn_scale
            .unwrap_or_else(|| 1.0 / (hp.head_dim as f32).sqrt());
        let ffn_act = match hp.activation {
            Activation::SwiGlu => ffi::ACT_SWIGLU,
            Activation::GeGlu => ffi::ACT_GEGLU,
        };
        let opt =
            |b: &Option<DeviceBuffer>| b.as_ref().map_or(nullf, |b| b.at::<f32>(0) as *const f32);

        // SAFETY (all kernel calls below): every pointer is a live device buffer sized for
        // MAX_STEP_TOKENS rows of the widths passed; kernels run in order on `st`.
        check(
            unsafe {
                ffi::rf_embed(
                    model.token_embd.ty.id() as i32,
                    model.token_embd.buf.ptr(),
                    model.token_embd.rows as i32,
                    d as i32,
                    meta(META_TOKENS),
                    n as i32,
                    hp.embd_scale.unwrap_or(1.0),
                    self.s.x.at(0),
                    st,
                )
            },
            "embedding",
        )?;
        for (il, layer) in model.layers.iter().enumerate() {
            if let Some(c) = cancel {
                c.check()?;
            }
            let x = self.s.x.at::<f32>(0);
            self.act(
                ffi::ACT_RMSNORM,
                x,
                layer.attn_norm.at(0),
                hp.rms_eps,
                d,
                n,
                null,
                &layer.qkv,
            )?;
            let qkv = self.s.qkv.at::<f32>(0);
            let spec = &layer.spec;
            // This layer's RoPE table (one per RoPE of the model, MAX_STEP_TOKENS rows each).
            let rot = self.s.rope.at::<f32>(spec.rope * m * hp.head_dim);
            // The layer's cell table: the sliding-window ring's for windowed layers of a
            // context with one (its own cells, ranges, count, and the chunk each token's
            // window starts in), else the full table's.
            let t = match (&self.ring, self.in_ring[il]) {
                (Some((_, pos, seqs)), true) => LayerCells {
                    tok_cell: meta(META_RING_CELL),
                    cell_pos: pos.at(0),
                    cell_seqs: seqs.at(0),
                    n_cells: meta(META_N_CELLS).wrapping_add(1),
                    tok_lo: meta(META_RING_LO),
                    tok_hi: meta(META_RING_HI),
                    tok_first: meta(META_RING_FIRST),
                },
                _ => LayerCells {
                    tok_cell: meta(META_CELL),
                    cell_pos: self.cell_pos.at(0),
                    cell_seqs: self.cell_seqs.at(0),
                    n_cells: meta(META_N_CELLS),
                    tok_lo: meta(META_CELL_LO),
                    tok_hi: meta(META_CELL_HI),
                    tok_first: null,
                },
            };
            let rope_kv = ffi::RopeKv {
                rot,
                tok_pos: meta(META_POS),
                tok_cell: t.tok_cell,
                tok_seq: meta(META_SEQ),
                k_cache: self.k_cache[il].ptr(),
                v_cache: self.v_cache[il].ptr(),
                cell_pos: t.cell_pos,
                cell_seqs: t.cell_seqs,
                q_dim: q_dim as i32,
                kv_dim: kv_dim as i32,
                head_dim: hp.head_dim as i32,
                out_offset: 0,
                kv_type: ffi::kv_type_id(self.kv_type),
            };
            if layer.qkv_post(hp) || self.kv_type == KvType::Q8_0 {
                // Biases, QK-norm or NEOX pairs come before the rotation: a kernel of its own,
                // which is also the one that writes q8_0 rows (a block of 32 per lane team).
                self.project(&layer.qkv, n, qkv, qkv_w, false, None)?;
                check(
                    unsafe {
                        ffi::rf_qkv_post(
                            qkv,
                            qkv_w as i32,
                            n as i32,
                            hp.n_head as i32,
                            hp.n_head_kv as i32,
                            hp.head_dim as i32,
                            opt(&layer.qkv_bias),
                            opt(&layer.q_norm),
                            opt(&layer.k_norm),
                            hp.rms_eps,
                            (hp.rope_style == RopeStyle::Neox) as i32,
                            rope_kv.rot,
                            rope_kv.tok_pos,
                            rope_kv.tok_cell,
                            rope_kv.tok_seq,
                            rope_kv.k_cache,
                            rope_kv.v_cache,
                            rope_kv.kv_type,
                            rope_kv.cell_pos,
                            rope_kv.cell_seqs,
                            st,
                        )
                    },
                    "Q/K/V biases, norms, RoPE and KV write",
                )?;
            } else if layer.qkv.parts.iter().all(|m| self.rotates_itself(m, n)) {
                // The mat-vec and the tree mat-mat rotate and store their results themselves:
                // a launch fewer per layer (not the staged mat-mat or BLAS).
                self.project(&layer.qkv, n, qkv, qkv_w, false, Some(rope_kv))?;
            } else {
                self.project(&layer.qkv, n, qkv, qkv_w, false, None)?;
                check(
                    unsafe {
                        ffi::rf_rope_kv(
                            qkv,
                            qkv.wrapping_add(q_dim),
                            qkv.wrapping_add(q_dim + kv_dim),
                            qkv_w as i32,
                            n as i32,
                            hp.n_head as i32,
                            hp.n_head_kv as i32,
                            hp.head_dim as i32,
                            rope_kv.rot,
                            rope_kv.tok_pos,
                            rope_kv.tok_cell,
                            rope_kv.tok_seq,
                            rope_kv.k_cache,
                            rope_kv.v_cache,
                            rope_kv.kv_type,
                            rope_kv.cell_pos,
                            rope_kv.cell_seqs,
                            st,
                        )
                    },
                    "RoPE / KV write",
                )?;
            }
            // Prompts: the tiled kernel reads each K/V chunk once per block. Decode steps of many
            // sequences (no sequence with more than a mat-vec batch) keep the split kernel and
            // its exact arithmetic, each token scanning only its own sequence's cells.
            let tiled = n > MATVEC_MAX_TOKENS
                && self.att_tiled
                && hp.head_dim <= 128
                && hp.head_dim.is_multiple_of(4)
                && hp.n_head / hp.n_head_kv <= 16;
            // Decode with a quantized output projection: attention writes the int8 input of
            // that product itself, saving the separate quantize pass.
            // (Not for Q8_K inputs: those are quantized from the f32 copy, by rf_act's pass.)
            let fuse_q8 =
                !tiled && n <= MATVEC_MAX_TOKENS && quantized(&layer.wo) && !reads_q8k(&layer.wo);
            // With K-quant output weights it writes their Q8_K activations instead (each
            // super-block by the head that completes it), saving rf_act's copy pass: a launch
            // per layer (Llama-3-8B Q4_K_M decode on an H100 with the split mat-vec of
            // kernels/matvec.hip: 344 -> 370 tok/s).
            let fuse_q8k = !tiled
                && n <= MATVEC_MAX_TOKENS
                && q_dim.is_multiple_of(256)
                && reads_q8k_only(&layer.wo);
            let window = spec.window.map_or(0, |w| w.min(i32::MAX as usize) as i32);
            let code = if tiled {
                unsafe {
                    ffi::rf_attention_prefill(
                        qkv,
                        qkv_w as i32,
                        self.k_cache[il].ptr(),
                        self.v_cache[il].ptr(),
                        ffi::kv_type_id(self.kv_type),
                        t.cell_pos,
                        t.cell_seqs,
                        t.n_cells,
                        meta(META_POS),
                        meta(META_SEQ),
                        t.tok_lo,
                        t.tok_hi,
                        n as i32,
                        hp.n_head as i32,
                        hp.n_head_kv as i32,
                        hp.head_dim as i32,
                        window,
                        att_scale,
                        self.s.attn.at(0),
                        st,
                    )
                }
            } else {
                // At most att_tokens tokens a launch (the scratch is sized for them).
                let mut code = 0;
                let mut t0 = 0;
                while t0 < n && code == 0 {
                    let nt = (n - t0).min(self.att_tokens);
                    code = unsafe {
                        ffi::rf_attention(
                            qkv.wrapping_add(t0 * qkv_w),
                            qkv_w as i32,
                            self.k_cache[il].ptr(),
                            self.v_cache[il].ptr(),
                            ffi::kv_type_id(self.kv_type),
                            t.cell_pos,
                            t.cell_seqs,
                            t.n_cells,
                            meta(META_POS).wrapping_add(t0),
                            meta(META_SEQ).wrapping_add(t0),
                            t.tok_lo.wrapping_add(t0),
                            t.tok_hi.wrapping_add(t0),
                            if t.tok_first.is_null() {
                                null
                            } else {
                                t.tok_first.wrapping_add(t0)
                            },
                            nt as i32,
                            hp.n_head as i32,
                            hp.n_head_kv as i32,
                            hp.head_dim as i32,
                            self.n_ctx as i32,
                            window,
                            att_scale,
                            self.att_splits as i32,
                            self.s.att_part.at(0),
                            self.s.att_counters.at(0),
                            self.s.attn.at::<f32>(t0 * q_dim),
                            if fuse_q8 {
                                self.s.xq.at(0)
                            } else {
                                std::ptr::null_mut()
                            },
                            if fuse_q8 {
                                self.s.xs.ptr()
                            } else {
                                std::ptr::null_mut()
                            },
                            if fuse_q8k {
                                self.s.xk.at(0)
                            } else {
                                std::ptr::null_mut()
                            },
                            if fuse_q8k {
                                self.s.xkh.ptr()
                            } else {
                                std::ptr::null_mut()
                            },
                            st,
                        )
                    };
                    t0 += nt;
                }
                code
            };
            check(code, "attention")?;
            let attn = self.s.attn.at::<f32>(0);
            if !fuse_q8 && !fuse_q8k {
                self.act(
                    ffi::ACT_COPY,
                    attn,
                    std::ptr::null(),
                    0.0,
                    q_dim,
                    n,
                    null,
                    &layer.wo,
                )?;
            }
            self.residual(&layer.wo, n, &layer.out_bias, &layer.post_attn_norm)?;
            self.act(
                ffi::ACT_RMSNORM,
                x,
                layer.ffn_norm.at(0),
                hp.rms_eps,
                d,
                n,
                null,
                &layer.gate_up,
            )?;
            self.project(&layer.gate_up, n, self.s.gate_up.at(0), 2 * ff, false, None)?;
            let gu = self.s.gate_up.at::<f32>(0);
            self.act(ffn_act, gu, std::ptr::null(), 0.0, ff, n, null, &layer.down)?;
            self.residual(&layer.down, n, &None, &layer.post_ffn_norm)?;
        }
        if n_out > 0 {
            let x = self.s.x.at::<f32>(0);
            self.act(
                ffi::ACT_RMSNORM,
                x,
                model.output_norm.at(0),
                hp.rms_eps,
                d,
                n_out,
                meta(META_ROWS),
                &model.output,
            )?;
            self.project(
                &model.output,
                n_out,
                self.s.logits.at(0),
                hp.n_vocab,
                false,
                None,
            )?;
            if let Some(cap) = hp.final_logit_softcap {
                // SAFETY: the logits buffer holds n_out rows of n_vocab floats.
                check(
                    unsafe { ffi::rf_softcap(self.s.logits.at(0), n_out * hp.n_vocab, cap, st) },
                    "logit soft-capping",
                )?;
            }
        }
        Ok(())
    }

    /// The residual add of a block's output product `p` (its input prepared): straight into
    /// the residual stream, or, with an output bias or a post-norm, into `proj` first and
    /// added by rf_residual as the CPU does (bias, then the norm, then the add).
    fn residual(
        &self,
        p: &Projection,
        n: usize,
        bias: &Option<DeviceBuffer>,
        norm: &Option<DeviceBuffer>,
    ) -> Result<()> {
        let x = self.s.x.at::<f32>(0);
        let d = self.model.hparams.n_embd;
        if bias.is_none() && norm.is_none() {
            return self.project(p, n, x, d, true, None);
        }
        let proj = self.s.proj.at::<f32>(0);
        self.project(p, n, proj, d, false, None)?;
        let ptr = |b: &Option<DeviceBuffer>| {
            b.as_ref()
                .map_or(std::ptr::null(), |b| b.at::<f32>(0) as *const f32)
        };
        // SAFETY: x and proj hold n rows of n_embd floats (proj is allocated for models with
        // such layers); bias and norm (nullable) n_embd floats.
        check(
            unsafe {
                ffi::rf_residual(
                    x,
                    proj,
                    ptr(bias),
                    ptr(norm),
                    self.model.hparams.rms_eps,
                    d as i32,
                    n as i32,
                    self.stream.raw(),
                )
            },
            "residual add",
        )
    }

    /// Transforms `n` rows of `input` (see ffi::ACT_*) into the inputs of the next product:
    /// f32 always, int8 groups for mat-vec sized batches, f16 for BLAS sized ones.
    #[allow(clippy::too_many_arguments)]
    fn act(
        &self,
        mode: i32,
        input: *const f32,
        w: *const f32,
        eps: f32,
        d: usize,
        n: usize,
        row_map: *const i32,
        next: &Projection,
    ) -> Result<()> {
        let small = n <= MATVEC_MAX_TOKENS;
        let quantized = quantized(next);
        // int8 groups for the mat-vec and the quantized mat-mat, f16 for parts going to BLAS.
        let int8 = small || next.parts.iter().any(|m| self.matmul_q(m, n));
        let f16 = !small && next.parts.iter().any(|m| !self.matmul_q(m, n));
        let null = std::ptr::null_mut::<c_void>();
        // Q8_K activations for K-quant mat-vecs, written by the same kernel.
        let q8k = small && reads_q8k(next);
        // SAFETY: scratch buffers hold MAX_STEP_TOKENS rows of the widest activation (f32, f16,
        // int8 and its scales); xk / xkh MATVEC_MAX_TOKENS rows of it and their headers.
        let code = unsafe {
            ffi::rf_act(
                mode,
                input,
                w,
                eps,
                d as i32,
                n as i32,
                row_map,
                self.s.xf.at(0),
                if f16 { self.s.x16.ptr() } else { null },
                quantized as i32,
                if int8 {
                    self.s.xq.at(0)
                } else {
                    std::ptr::null_mut()
                },
                if int8 { self.s.xs.ptr() } else { null },
                if q8k {
                    self.s.xk.at(0)
                } else {
                    std::ptr::null_mut()
                },
                if q8k { self.s.xkh.ptr() } else { null },
                self.stream.raw(),
            )
        };
        check(code, "activation transform")
    }

    /// A projection of two K-quant parts of different types (a Q|K|V whose V has more bits)
    /// as one mat-vec launch, when a kernel takes the pair; false when it does not (nothing
    /// queued).
    fn project_pair(
        &self,
        p: &Projection,
        n: usize,
        y: *mut f32,
        ldy: usize,
        accumulate: bool,
        rope_kv: Option<ffi::RopeKv>,
    ) -> Result<bool> {
        let [a, b] = p.parts.as_slice() else {
            return Ok(false);
        };
        let k_quant = |m: &GpuMatrix| {
            n <= MATVEC_MAX_TOKENS
                && !self.matmul_q(m, n)
                && m.ty.format().is_some_and(reads_q8k_format)
        };
        if !(k_quant(a) && k_quant(b) && a.cols == b.cols) {
            return Ok(false);
        }
        let rope = |m: &GpuMatrix| {
            rope_kv.map(|r| ffi::RopeKv {
                out_offset: m.out_offset as i32,
                ..r
            })
        };
        let (ra, rb) = (rope(a), rope(b));
        let ptr = |r: &Option<ffi::RopeKv>| r.as_ref().map_or(std::ptr::null(), |r| r as *const _);
        // SAFETY: weight buffers of rows x cols in their types; the Q8_K activations prepared
        // for n rows; ra / rb (nullable) alive across the call.
        let code = unsafe {
            ffi::rf_matvec_pair(
                a.ty.id() as i32,
                a.buf.ptr(),
                a.rows as i32,
                y.wrapping_add(a.out_offset),
                ptr(&ra),
                b.ty.id() as i32,
                b.buf.ptr(),
                b.rows as i32,
                y.wrapping_add(b.out_offset),
                ptr(&rb),
                a.cols as i32,
                self.s.xk.at(0),
                self.s.xkh.ptr(),
                n as i32,
                ldy as i32,
                accumulate as i32,
                self.stream.raw(),
            )
        };
        if code == ffi::MATVEC_NOT_PAIRED {
            return Ok(false);
        }
        check(code, "matrix-vector product (two types)")?;
        Ok(true)
    }

    /// `y[:, part offsets] (+)= x . Wᵀ` for each part of `p`, rows of y `ldy` apart, reading
    /// the activations `act` just prepared. `rope_kv`: the product is attention's Q|K|V and
    /// its results are rotated and stored as rf_rope_kv would (mat-vec sized batches only).
    fn project(
        &self,
        p: &Projection,
        n: usize,
        y: *mut f32,
        ldy: usize,
        accumulate: bool,
        rope_kv: Option<ffi::RopeKv>,
    ) -> Result<()> {
        let st = self.stream.raw();
        if self.project_pair(p, n, y, ldy, accumulate, rope_kv)? {
            return Ok(());
        }
        for mtx in &p.parts {
            let yp = y.wrapping_add(mtx.out_offset);
            let ty = mtx.ty.id() as i32;
            let part_rope = rope_kv.map(|r| ffi::RopeKv {
                out_offset: mtx.out_offset as i32,
                ..r
            });
            let rope_ptr = part_rope
                .as_ref()
                .map_or(std::ptr::null(), |r| r as *const ffi::RopeKv);
            if n <= MATVEC_MAX_TOKENS && !self.matmul_q(mtx, n) {
                // The K-quants read the Q8_K activations, the other quantized types the int8
                // groups of 32.
                let (xq, xs) = if mtx.ty.format().is_some_and(reads_q8k_format) {
                    (self.s.xk.at(0), self.s.xkh.ptr())
                } else {
                    (self.s.xq.at(0), self.s.xs.ptr())
                };
                // SAFETY: weight buffer of rows x cols in `ty`; activations prepared for n rows;
                // rope_ptr (nullable) points at part_rope, alive across the call.
                let code = unsafe {
                    ffi::rf_matvec(
                        ty,
                        mtx.buf.ptr(),
                        mtx.rows as i32,
                        mtx.cols as i32,
                        self.s.xf.at(0),
                        xq,
                        xs,
                        n as i32,
                        yp,
                        ldy as i32,
                        accumulate as i32,
                        rope_ptr,
                        st,
                    )
                };
                check(code, "matrix-vector product")?;
                continue;
            }
            if self.tree_matmul(mtx, n) {
                let row_tiles = self.matmul_q_tree_rows.unwrap_or(MATMUL_Q_TREE_ROWS);
                // SAFETY: weight buffer of rows x cols in `ty`; int8 activations and scales of n
                // rows prepared by rf_act; y rows hold ldy floats; mm_part holds
                // MATMUL_PART_FLOATS floats; rope_ptr (nullable) points at part_rope, alive
                // across the call.
                let code = unsafe {
                    ffi::rf_matmul_q_tree(
                        ty,
                        mtx.buf.ptr(),
                        mtx.rows as i32,
                        mtx.cols as i32,
                        self.s.xq.at(0),
                        self.s.xs.ptr(),
                        n as i32,
                        yp,
                        ldy as i32,
                        accumulate as i32,
                        row_tiles as i32,
                        self.s.mm_part.at(0),
                        super::MATMUL_PART_FLOATS,
                        rope_ptr,
                        st,
                    )
                };
                check(code, "quantized matrix product")?;
                continue;
            }
            // The products below have no RoPE epilogue (the caller asks only rotates_itself's).
            debug_assert!(rope_kv.is_none());
            if self.matmul_q(mtx, n) {
                let parts = self.matmul_q_parts(mtx.rows, n);
                // SAFETY: weight buffer of rows x cols in `ty`; int8 activations and scales of n
                // rows prepared by rf_act; mm_part holds parts x n x rows floats (checked by
                // matmul_q_parts).
                let code = unsafe {
                    ffi::rf_matmul_q(
                        ty,
                        mtx.buf.ptr(),
                        mtx.rows as i32,
                        mtx.cols as i32,
                        self.s.xq.at(0),
                        self.s.xs.ptr(),
                        n as i32,
                        yp,
                        ldy as i32,
                        accumulate as i32,
                        parts as i32,
                        self.s.mm_part.at(0),
                        st,
                    )
                };
                check(code, "quantized matrix product")?;
                continue;
            }
            for (r0, nr) in dequant_pieces(mtx.rows, mtx.cols, self.s.dequant_elems) {
                // SAFETY: nr x cols halves fit the dequantization buffer; y rows hold ldy floats.
                unsafe {
                    check(
                        ffi::rf_dequant_f16(
                            ty,
                            mtx.buf.ptr(),
                            mtx.rows as i32,
                            r0 as i32,
                            nr as i32,
                            mtx.cols as i32,
                            self.s.dequant.ptr(),
                            st,
                        ),
                        "dequantizing weights",
                    )?;
                    check(
                        ffi::rf_gemm_f16(
                            self.blas.raw(),
                            self.s.dequant.ptr(),
                            nr as i32,
                            mtx.cols as i32,
                            self.s.x16.ptr(),
                            n as i32,
                            yp.wrapping_add(r0),
                            ldy as i32,
                            accumulate as i32,
                        ),
                        "matrix product (BLAS)",
                    )?;
                }
            }
        }
        Ok(())
    }
}

impl GpuContext {
    /// Whether `m`'s product for n tokens takes a kernel with the RoPE epilogue (`project`'s
    /// `rope_kv`): the mat-vec or the tree mat-mat.
    fn rotates_itself(&self, m: &GpuMatrix, n: usize) -> bool {
        self.tree_matmul(m, n) || (n <= MATVEC_MAX_TOKENS && !self.matmul_q(m, n))
    }

    /// Whether this matrix's int8 mat-mat for n tokens is the tree kernel's.
    fn tree_matmul(&self, m: &GpuMatrix, n: usize) -> bool {
        self.matmul_q(m, n) && n <= self.matmul_q_tree_max_tokens
    }

    /// Whether this matrix's product for a step of n tokens runs as the int8 mat-mat.
    fn matmul_q(&self, m: &GpuMatrix, n: usize) -> bool {
        n >= self.matmul_q_min_tokens
            && n <= self.matmul_q_max_tokens
            // The kernel addresses the weights with 32-bit byte offsets.
            && m.buf.len_bytes() <= u32::MAX as usize
            // SAFETY: a pure query of the kernel library.
            && unsafe { ffi::rf_matmul_q_supported(m.ty.id() as i32) } != 0
    }

    /// Over how many blocks the mat-mat splits each output's sum: enough blocks to fill the
    /// device (64 rows x 32 tokens a block; at least `matmul_q_blocks` blocks wanted),
    /// within the subtree-sum scratch.
    fn matmul_q_parts(&self, rows: usize, n: usize) -> usize {
        let fits = |p: usize| p == 1 || p * n * rows <= super::MATMUL_PART_FLOATS;
        if let Some(p) = self.matmul_q_parts {
            return if fits(p) { p } else { 1 };
        }
        let blocks = rows.div_ceil(64) * n.div_ceil(32);
        let offered = || MATMUL_Q_PARTS.into_iter().filter(|&p| fits(p));
        offered()
            .find(|&p| blocks * p >= self.matmul_q_blocks)
            .unwrap_or_else(|| offered().next_back().unwrap_or(1))
    }
}

/// Pieces of a matrix cut for the dequantization buffer start at multiples of this many rows.
const DEQUANT_PIECE_ALIGN: usize = 256;

/// The tree kernel's default shape: two tiles of 16 rows per team (each token fragment read
/// once for both). H100, Llama-3-8B Q4_0, generation tok/s at 4 / 8 sequences: 937-963 /
/// 1,824-1,844; one tile 748 / 1,545 (the shape of the kernel before its stages went through
/// shared memory: 900-901 / 1,583-1,607, and 1,487-1,496 with one tile).
const MATMUL_Q_TREE_ROWS: usize = 2;

/// The splits of each output's sum the mat-mat offers (kernels/matmul_q.hip: 32 / parts
/// positions of the canonical tree per block).
pub(super) const MATMUL_Q_PARTS: [usize; 5] = [1, 2, 4, 8, 16];

/// The (first row, rows) pieces a matrix of `rows` x `cols` is dequantized and multiplied in
/// through a buffer of `budget` elements: the whole matrix when it fits, else as few pieces as
/// fit, of one size rounded up to a multiple of 256 rows, so each piece's output starts 1 KiB
/// aligned and BLAS can take its vectorised kernels. Cut greedily (18,724 + 220 rows for
/// Qwen2.5-7B's 18,944 x 3,584 FFN matrices, 3,542 + 42 for its down projection), cuBLAS ran
/// every piece on 2-element-aligned Ampere kernels on the H200: 26.5 of a 512-token prompt's
/// 51.6 ms.
fn dequant_pieces(rows: usize, cols: usize, budget: usize) -> Vec<(usize, usize)> {
    let fit = (budget / cols.max(1)).max(1);
    if rows <= fit {
        return vec![(0, rows)];
    }
    let align = if fit >= DEQUANT_PIECE_ALIGN {
        DEQUANT_PIECE_ALIGN
    } else {
        1
    };
    let max_rows = fit / align * align;
    let per = rows
        .div_ceil(rows.div_ceil(max_rows))
        .div_ceil(align)
        .saturating_mul(align)
        .min(max_rows);
    (0..rows)
        .step_by(per)
        .map(|r0| (r0, per.min(rows - r0)))
        .collect()
}

/// Whether the product reads int8 activations (any quantized part).
fn quantized(p: &Projection) -> bool {
    p.parts
        .iter()
        .any(|m| m.ty.format().is_some_and(Format::gpu_int8))
}

/// Whether the GPU mat-vec dots weights of this format with Q8_K activations (the K-quants).
fn reads_q8k_format(f: &Format) -> bool {
    f.gpu_int8() && f.activation == Some(GgmlType::Q8K)
}

/// Whether any part of the product reads Q8_K activations.
fn reads_q8k(p: &Projection) -> bool {
    p.parts
        .iter()
        .any(|m| m.ty.format().is_some_and(reads_q8k_format))
}

/// Whether every part of the product reads Q8_K activations (and nothing else: no int8
/// groups, no f32 copy).
fn reads_q8k_only(p: &Projection) -> bool {
    p.parts
        .iter()
        .all(|m| m.ty.format().is_some_and(reads_q8k_format))
}

/// Where one layer's tokens store and find their keys and values: the full table, or the
/// sliding-window ring (device pointers; the per-token arrays are the step's metadata).
struct LayerCells {
    tok_cell: *const i32,
    cell_pos: *mut i32,
    cell_seqs: *mut u64,
    n_cells: *const i32,
    tok_lo: *const i32,
    tok_hi: *const i32,
    /// Per token, the attention chunk its window's oldest position lies in (ring only: the
    /// chunks are joined from there, wrapping); null joins them in cell order.
    tok_first: *const i32,
}

#[cfg(test)]
mod tests {
    use super::dequant_pieces;

    const BUDGET: usize = 64 << 20;

    #[test]
    fn dequant_pieces_are_even_and_256_row_aligned() {
        // Qwen2.5-7B's FFN matrices, as the H200 run cut them.
        assert_eq!(
            dequant_pieces(18944, 3584, BUDGET),
            [(0, 9472), (9472, 9472)]
        );
        assert_eq!(
            dequant_pieces(3584, 18944, BUDGET),
            [(0, 1792), (1792, 1792)]
        );
        // A matrix that fits is one piece, whatever its row count.
        assert_eq!(dequant_pieces(14336, 4096, BUDGET), [(0, 14336)]);
        assert_eq!(dequant_pieces(1001, 3, BUDGET), [(0, 1001)]);
        for (rows, cols, budget) in [
            (152_064, 3584, BUDGET),
            (100_003, 4096, BUDGET),
            (5000, 777, 777 * 300),
            (1000, 64, 64 * 100),
            (7, 10, 15),
        ] {
            let pieces = dequant_pieces(rows, cols, budget);
            let fit = (budget / cols).max(1);
            let mut next = 0;
            for &(r0, nr) in &pieces {
                assert_eq!(r0, next, "{rows}x{cols}: pieces are contiguous");
                assert!(nr >= 1 && nr <= fit, "{rows}x{cols}: {nr} rows fit {fit}");
                if fit >= 256 {
                    assert_eq!(r0 % 256, 0, "{rows}x{cols}: piece at row {r0}");
                }
                next = r0 + nr;
            }
            assert_eq!(next, rows, "{rows}x{cols}: every row once");
            // As few pieces as the aligned size allows.
            let max_rows = if fit >= 256 { fit / 256 * 256 } else { fit };
            assert_eq!(pieces.len(), rows.div_ceil(max_rows), "{rows}x{cols}");
        }
    }
}
