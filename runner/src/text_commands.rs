//! `bitnet generate`, `bitnet perplexity` and `bitnet tokenize` on the engine.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use bitnet_engine::gguf::GgufFile;
use bitnet_engine::model::{argmax, perplexity, Model, ModelOptions, Session};
use bitnet_engine::tokenizer::Tokenizer;

/// Loads the model and its tokenizer (read from the same file's metadata).
fn load(path: &Path, threads: usize, kv_f16: bool) -> Result<(Model, Tokenizer)> {
    let file = GgufFile::open(path).with_context(|| format!("opening {}", path.display()))?;
    let tokenizer = Tokenizer::from_metadata(file.metadata())
        .with_context(|| format!("reading the tokenizer of {}", path.display()))?;
    let options = ModelOptions {
        threads,
        kv_f16,
        ..ModelOptions::default()
    };
    let model = Model::load(path, &options)
        .with_context(|| format!("loading the model {}", path.display()))?;
    Ok((model, tokenizer))
}

/// Greedy generation of `n` tokens after `prompt`, streamed to stdout; timings on stderr.
pub fn generate(
    path: &Path,
    prompt: &str,
    n: usize,
    threads: usize,
    n_ctx: usize,
    kv_f16: bool,
) -> Result<()> {
    let t_load = Instant::now();
    let (model, tokenizer) = load(path, threads, kv_f16)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let tokens = tokenizer.encode(prompt, true, false);
    ensure!(!tokens.is_empty(), "the prompt encodes to no tokens");
    let mut session = Session::new(&model, n_ctx);
    let mut stream = tokenizer.stream_decoder(false);
    let mut out = std::io::stdout().lock();
    write!(out, "{prompt}")?;
    let t_prefill = Instant::now();
    let mut next = argmax(session.eval(&tokens, false)?.as_slice());
    let prefill_s = t_prefill.elapsed().as_secs_f64();
    let t_decode = Instant::now();
    let mut generated = 0usize;
    while generated < n {
        generated += 1;
        write!(out, "{}", stream.push(next))?;
        out.flush()?;
        if tokenizer.is_eog(next) || generated == n {
            break;
        }
        next = argmax(session.eval(&[next], false)?.as_slice());
    }
    writeln!(out, "{}", stream.finish())?;
    let decode_s = t_decode.elapsed().as_secs_f64();
    eprintln!(
        "load {load_s:.2} s | prompt {} tokens, {:.1} tok/s | generated {generated} tokens, {:.1} tok/s",
        tokens.len(),
        tokens.len() as f64 / prefill_s,
        generated.saturating_sub(1) as f64 / decode_s.max(f64::EPSILON),
    );
    Ok(())
}

/// Perplexity of a text file, following llama-perplexity's protocol.
pub fn perplexity_of_file(
    path: &Path,
    text: &Path,
    n_ctx: usize,
    chunks: usize,
    threads: usize,
) -> Result<()> {
    let (model, tokenizer) = load(path, threads, true)?;
    let text = std::fs::read_to_string(text)
        .with_context(|| format!("reading the text {}", text.display()))?;
    let tokens = tokenizer.encode(&text, true, false);
    let t = Instant::now();
    let p = perplexity(&model, &tokens, n_ctx, chunks)?;
    println!(
        "PPL = {:.4} ± {:.4} over {} scored tokens ({} tokens of text, ctx {n_ctx}, {:.1} s)",
        p.ppl,
        p.ppl_err,
        p.nll.len(),
        tokens.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
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
