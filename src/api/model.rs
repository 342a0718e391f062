//! Loading a model: parse the GGUF, check architecture and weights, build the tokenizer.

use crate::backend::gpu::{self, GpuModel};
use crate::gguf::GgufFile;
use crate::model::{Hparams, LoadedModel};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use std::path::Path;
use std::sync::Arc;

/// Called during load with the fraction done (0..=1); returning `false` cancels the load.
pub type ProgressFn<'a> = &'a mut dyn FnMut(f32) -> bool;

/// Where a model's weights live and its contexts compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The GPU when this library has a GPU backend and a device is present, else the CPU.
    Auto,
    Cpu,
    Gpu,
}

pub struct ModelParams<'a> {
    /// Map the file (weights stay in the page cache, zero-copy) instead of reading it into memory.
    pub use_mmap: bool,
    pub progress: Option<ProgressFn<'a>>,
    pub backend: Backend,
    /// GPU index (see [`super::devices`]); ignored by the CPU backend.
    pub device: usize,
}

impl Default for ModelParams<'_> {
    fn default() -> Self {
        ModelParams {
            use_mmap: true,
            progress: None,
            backend: Backend::Auto,
            device: 0,
        }
    }
}

/// A loaded model: immutable, cheap to clone, shareable across threads and contexts.
#[derive(Clone)]
pub struct Model {
    inner: Arc<ModelInner>,
}

struct ModelInner {
    loaded: Arc<LoadedModel>,
    tokenizer: Tokenizer,
    /// The weights on the GPU, when the model runs there.
    gpu: Option<Arc<GpuModel>>,
    /// Why `Backend::Auto` left this model on the CPU although a GPU was usable.
    auto_on_cpu: Option<String>,
}

/// Granularity of load progress reports (and of cancellation checks).
const PROGRESS_STEP: usize = 8 << 20;

impl Model {
    pub fn load(path: impl AsRef<Path>, params: ModelParams<'_>) -> Result<Model> {
        let path = path.as_ref();
        let mut progress = params.progress;
        let mut report = |fraction: f32| -> Result<()> {
            match progress.as_mut() {
                Some(f) => {
                    if f(fraction) {
                        Ok(())
                    } else {
                        Err(Error::Cancelled)
                    }
                }
                None => Ok(()),
            }
        };
        report(0.0)?;
        let on_gpu = super::device::resolve_backend(params.backend, params.device)?;
        // Reading the file is the first part of the progress; uploading to the GPU the rest.
        let read_share = if on_gpu { 0.5 } else { 0.95 };
        let gguf = if params.use_mmap {
            let gguf = GgufFile::open(path)?;
            // Touch every page once so the first token does not pay for page faults, and so
            // progress reflects real reading work.
            let bytes = gguf.as_bytes();
            let mut checksum = 0u8;
            for (i, chunk) in bytes.chunks(PROGRESS_STEP).enumerate() {
                for page in chunk.iter().step_by(4096) {
                    checksum = checksum.wrapping_add(*page);
                }
                report(
                    ((i + 1) * PROGRESS_STEP).min(bytes.len()) as f32 / bytes.len() as f32
                        * read_share,
                )?;
            }
            std::hint::black_box(checksum);
            gguf
        } else {
            let bytes = crate::fileio::read_regular(path, u64::MAX, PROGRESS_STEP, &mut |f| {
                report(f * read_share)
            })?;
            GgufFile::from_bytes(bytes)?
        };
        let mut model = Model::from_gguf(gguf)?;
        // AUTO with a usable GPU: a model the GPU backend does not run (a tensor type or a
        // feature it lacks) stays on the CPU, which runs everything, and says why.
        let mut on_gpu = on_gpu;
        if on_gpu && params.backend == Backend::Auto {
            if let Err(why) = gpu::check(&model.inner.loaded) {
                on_gpu = false;
                Arc::get_mut(&mut model.inner)
                    .ok_or_else(|| Error::InvalidArgument("model already shared".into()))?
                    .auto_on_cpu = Some(why.to_string());
            }
        }
        if on_gpu {
            model = model.upload_to_gpu(params.device, &mut |f| {
                report(read_share + f * (1.0 - read_share))
            })?;
        }
        report(1.0)?;
        Ok(model)
    }

    /// Builds a model from an already parsed file (tests build tiny ones in memory), to run on
    /// the CPU: refused (`UnsupportedFeature`) when it uses a feature the CPU backend does not
    /// run. (The CPU runs every feature the GPU does: it is the reference.)
    pub fn from_gguf(gguf: GgufFile) -> Result<Model> {
        let loaded = LoadedModel::new(gguf)?;
        loaded
            .hparams
            .check_backend("CPU", crate::backend::cpu::RUNS)?;
        let tokenizer = Tokenizer::from_gguf(&loaded.gguf)?;
        if tokenizer.n_vocab() != loaded.hparams.n_vocab {
            return Err(Error::InvalidModel(format!(
                "tokenizer has {} tokens but the model's vocabulary is {}",
                tokenizer.n_vocab(),
                loaded.hparams.n_vocab
            )));
        }
        Ok(Model {
            inner: Arc::new(ModelInner {
                loaded: Arc::new(loaded),
                tokenizer,
                gpu: None,
                auto_on_cpu: None,
            }),
        })
    }

    /// Copies the weights to GPU `device` (progress 0..=1 through `report`, which may cancel:
    /// the upload then stops after the tensor in flight).
    fn upload_to_gpu(
        self,
        device: usize,
        report: &mut dyn FnMut(f32) -> Result<()>,
    ) -> Result<Model> {
        let inner = Arc::try_unwrap(self.inner)
            .map_err(|_| Error::InvalidArgument("model already shared".into()))?;
        let gpu = gpu::upload(&inner.loaded, device, &mut |done, total| {
            report(done as f32 / total.max(1) as f32)
        })?;
        Ok(Model {
            inner: Arc::new(ModelInner {
                gpu: Some(Arc::new(gpu)),
                ..inner
            }),
        })
    }

    /// Why `Backend::Auto` put this model on the CPU although a GPU was usable (a tensor type or
    /// feature the GPU backend does not run yet); `None` otherwise.
    pub fn auto_on_cpu(&self) -> Option<&str> {
        self.inner.auto_on_cpu.as_deref()
    }

    /// The weights on the GPU, when this model runs there.
    pub(crate) fn gpu(&self) -> Option<&Arc<GpuModel>> {
        self.inner.gpu.as_ref()
    }

    /// The backend this model's contexts compute on (never `Auto`).
    pub fn backend(&self) -> Backend {
        match self.inner.gpu {
            Some(_) => Backend::Gpu,
            None => Backend::Cpu,
        }
    }

    pub fn hparams(&self) -> &Hparams {
        &self.inner.loaded.hparams
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    /// A metadata value rendered as text (numbers in decimal, arrays as `[a, b]`), if the key
    /// exists.
    pub fn meta(&self, key: &str) -> Option<String> {
        self.gguf().get(key).map(|v| v.to_string())
    }

    /// The parsed file: any metadata key, tensor infos.
    pub fn gguf(&self) -> &GgufFile {
        &self.inner.loaded.gguf
    }

    pub(crate) fn loaded(&self) -> &Arc<LoadedModel> {
        &self.inner.loaded
    }

    pub fn name(&self) -> Option<&str> {
        self.gguf().get_str("general.name")
    }

    /// The file's Jinja chat template (`tokenizer.chat_template`), else its family's standard
    /// one (Gemma 3 files often carry none), else None.
    pub fn chat_template(&self) -> Option<&str> {
        (self.gguf().get_str("tokenizer.chat_template")).or(self
            .hparams()
            .arch
            .family()
            .chat_template)
    }

    /// Total elements of all tensors.
    pub fn n_params(&self) -> u64 {
        self.gguf().tensors().iter().map(|t| t.n_elements()).sum()
    }

    /// Bytes of all tensor data.
    pub fn size_bytes(&self) -> u64 {
        self.gguf().tensors().iter().map(|t| t.n_bytes).sum()
    }
}
