//! `bitnet perplexity` and `bitnet tokenize` on the engine.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use bitnet_engine::gguf::GgufFile;
use bitnet_engine::kernels::Isa;
use bitnet_engine::model::{
    perplexity_with_progress, DeviceStrategy, LutTiling, LutTilings, Model, ModelOptions,
};
use bitnet_engine::tokenizer::Tokenizer;
use indicatif::{ProgressBar, ProgressStyle};

/// Loads the model and its tokenizer (read from the same file's metadata).
pub(crate) fn load(path: &Path, options: &ModelOptions) -> Result<(Model, Tokenizer)> {
    let model = Model::load(path, options)
        .with_context(|| format!("loading the model {}", path.display()))?;
    let tokenizer = Tokenizer::from_metadata(model.metadata())
        .with_context(|| format!("reading the tokenizer of {}", path.display()))?;
    Ok((model, tokenizer))
}

/// The CPU kernels' instruction set, and bitnet.cpp's `kernel_config.ini` files giving the
/// tilings of TL1 and TL2 weights, over those a model file records.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KernelConfigs {
    /// Instruction set of the CPU kernels: scalar, avx2, avxvnni, avx512, avx512vnni or neon
    /// (default: the fastest this CPU has).
    #[arg(long)]
    pub isa: Option<Isa>,
    /// bitnet.cpp's `kernel_config.ini` giving the tilings of TL1 weights (over those the file
    /// records).
    #[arg(long, value_name = "FILE")]
    pub tl1_config: Option<PathBuf>,
    /// bitnet.cpp's `kernel_config.ini` giving the tilings of TL2 weights (over those the file
    /// records).
    #[arg(long, value_name = "FILE")]
    pub tl2_config: Option<PathBuf>,
}

impl KernelConfigs {
    /// `options` with this instruction set and the tilings of these files.
    pub fn apply(&self, options: ModelOptions) -> Result<ModelOptions> {
        Ok(ModelOptions {
            isa: self.isa,
            tl1_tilings: tilings(self.tl1_config.as_deref())?,
            tl2_tilings: tilings(self.tl2_config.as_deref())?,
            ..options
        })
    }
}

/// The tilings of a `kernel_config.ini` file, or none.
fn tilings<T: LutTiling>(config: Option<&Path>) -> Result<LutTilings<T>> {
    config.map_or_else(
        || Ok(LutTilings::default()),
        |path| {
            LutTilings::from_ini_file(path).with_context(|| {
                format!("reading the {} kernel config {}", T::FORMAT, path.display())
            })
        },
    )
}

/// Perplexity of a text file, following llama-perplexity's protocol with chunks of `n_ctx`
/// (`chunks` of them, 0: all), with a progress bar on stderr (when it is a terminal);
/// `nll_out` receives each scored token's negative log-likelihood, one per line; `configs` give
/// the tilings of TL1 and TL2 weights.
pub fn perplexity_of_file(
    path: &Path,
    text: &Path,
    (n_ctx, chunks): (usize, usize),
    (threads, device): (usize, DeviceStrategy),
    nll_out: Option<&Path>,
    configs: &KernelConfigs,
) -> Result<()> {
    let options = configs.apply(ModelOptions {
        threads,
        device,
        ..ModelOptions::default()
    })?;
    let (model, tokenizer) = load(path, &options)?;
    let text = std::fs::read_to_string(text)
        .with_context(|| format!("reading the text {}", text.display()))?;
    let tokens = tokenizer.encode(&text, true, false);
    let t = Instant::now();
    let bar = chunk_bar();
    let p = perplexity_with_progress(&model, &tokens, n_ctx, chunks, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let p = p?;
    println!(
        "PPL = {:.4} ± {:.4} over {} scored tokens ({} tokens of text, ctx {n_ctx}, {:.1} s on {})",
        p.ppl,
        p.ppl_err,
        p.nll.len(),
        tokens.len(),
        t.elapsed().as_secs_f64(),
        model.device().device
    );
    if let Some(out) = nll_out {
        let lines: String = p.nll.iter().map(|v| format!("{v}\n")).collect();
        std::fs::write(out, lines)
            .with_context(|| format!("writing the per-token NLL to {}", out.display()))?;
    }
    Ok(())
}

/// A progress bar over perplexity chunks on stderr, hidden when stderr is not a terminal.
fn chunk_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} chunks [{elapsed_precise} < {eta}]")
    {
        bar.set_style(style);
    }
    bar
}

/// Token ids (and pieces) of `text` with the file's tokenizer.
pub fn tokenize(path: &Path, text: &str, add_special: bool, parse_special: bool) -> Result<()> {
    let file = GgufFile::open(path).with_context(|| format!("opening {}", path.display()))?;
    let tokenizer = Tokenizer::from_metadata(file.metadata())
        .with_context(|| format!("reading the tokenizer of {}", path.display()))?;
    for id in tokenizer.encode(text, add_special, parse_special) {
        let piece = tokenizer.token_to_piece(id, true);
        println!("{id:>8} {:?}", String::from_utf8_lossy(&piece));
    }
    Ok(())
}
