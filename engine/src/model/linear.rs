//! Weight matrices in any supported format, applied to a batch of tokens.

use std::ops::Range;

use half::f16;
use zerocopy::FromBytes;

use super::{LutTiling, LutTilings, ModelError, ModelTilings};
use crate::formats::{
    interleave_quads, FormatError, I2sLayout, I2sMatrix, I8sActivations, Q6KMatrix,
    Q8_0Activations, Q8_0Matrix, Q8kActivations, Shape, Tl1Activations, Tl1Matrix, Tl1Tiling,
    Tl2Activations, Tl2Matrix, Tl2Tiling, TqKind, TqMatrix,
};
use crate::gguf::{GgmlType, GgufFile};
use crate::kernels::{CpuKernels, DenseMatrix};

/// A weight matrix of the model file: where its bytes are, its type and shape, and the optional
/// per-tensor scale (`*.scale`) that multiplies its output; TL1 and TL2 matrices also carry their
/// tiling.
#[derive(Debug, Clone)]
pub struct Linear {
    name: String,
    ty: GgmlType,
    shape: Shape,
    bytes: Range<usize>,
    scale: Option<f32>,
    tl1: Option<Tl1Tiling>,
    tl2: Option<Tl2Tiling>,
    i2s_layout: I2sLayout,
    /// The weight scale an I2_S matrix's bytes end with (0 for other types).
    i2s_scale: f32,
}

impl Linear {
    /// Finds tensor `name` with `ne0 = k` inputs and `rows` outputs; types I2_S, TL1, TL2,
    /// TQ1_0, TQ2_0, Q8_0, Q6_K, F32 and F16 are accepted. A TL1 or TL2 tensor takes its tiling
    /// from `tilings` (else [`ModelError::MissingTiling`]).
    pub fn load(
        file: &GgufFile,
        name: &str,
        k: usize,
        rows: usize,
        tilings: &ModelTilings,
    ) -> Result<Self, ModelError> {
        let info = file.tensor_info(name)?;
        let expected = vec![k as u64, rows as u64];
        if info.dims != expected {
            return Err(ModelError::Shape {
                tensor: name.into(),
                expected,
                actual: info.dims.clone(),
            });
        }
        if !matches!(
            info.ty,
            GgmlType::I2_S
                | GgmlType::TL1
                | GgmlType::TL2
                | GgmlType::TQ1_0
                | GgmlType::TQ2_0
                | GgmlType::Q8_0
                | GgmlType::Q6_K
                | GgmlType::F32
                | GgmlType::F16
        ) {
            return Err(ModelError::UnsupportedType {
                tensor: name.into(),
                ty: info.ty,
            });
        }
        let tl1 = (info.ty == GgmlType::TL1)
            .then(|| tiling_of(&tilings.tl1, name, rows, k))
            .transpose()?;
        let tl2 = (info.ty == GgmlType::TL2)
            .then(|| tiling_of(&tilings.tl2, name, rows, k))
            .transpose()?;
        let len = file.tensor_data(info)?.len();
        let start = info.file_offset as usize;
        let linear = Linear {
            name: name.into(),
            ty: info.ty,
            shape: Shape::new(k, rows),
            bytes: start..start + len,
            scale: None,
            tl1,
            tl2,
            i2s_layout: I2sLayout::Rows,
            i2s_scale: 0.0,
        };
        let i2s_scale = linear.check(file.bytes())?;
        Ok(Linear {
            i2s_scale,
            ..linear
        })
    }

    /// The same matrix with its output multiplied by `scale`.
    pub fn with_scale(mut self, scale: Option<f32>) -> Self {
        self.scale = scale;
        self
    }

    /// The tensor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tensor's type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// The per-tensor output scale, if the file has one.
    pub fn scale(&self) -> Option<f32> {
        self.scale
    }

    /// Bytes of the matrix in the file: what one token's product reads.
    pub fn weight_bytes(&self) -> usize {
        self.bytes.len()
    }

    #[cfg(feature = "cuda")]
    /// The tensor's bytes within the model file's bytes.
    pub(crate) fn data<'a>(&self, file_bytes: &'a [u8]) -> &'a [u8] {
        &file_bytes[self.bytes.clone()]
    }

    /// The shape (`ne0` inputs, `ne1` outputs).
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// `W · x` for each token of `x` (row-major, `ne0` values per token), as the reference's
    /// `mul_mat` computes it, into `out` (`ne1` values per token; its memory is reused, so a
    /// caller that keeps it between products does not fault fresh pages in for each).
    pub fn apply(
        &self,
        file_bytes: &[u8],
        kernels: &CpuKernels,
        x: &[f32],
        out: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        let bytes = &file_bytes[self.bytes.clone()];
        let (k, rows) = (self.shape.ne0, self.shape.ne1);
        let tokens = x.len() / k;
        let contract = kernels.numerics().contract;
        if self.ty == GgmlType::I2_S {
            let a = quantize_i8s(kernels, x, k).map_err(|e| self.format_error(e))?;
            return self.apply_i2s(file_bytes, kernels, &a, out);
        }
        reset(out, tokens * rows);
        match self.ty {
            GgmlType::TL1 => {
                let w = self.tl1_matrix(bytes)?;
                let a = Tl1Activations::quantize(x, k).map_err(|e| self.format_error(e))?;
                kernels.tl1_gemm(&w, &a, out)?;
            }
            GgmlType::TL2 => {
                let w = self.tl2_matrix(bytes)?;
                let a = Tl2Activations::quantize(x, k, w.three_cols())
                    .map_err(|e| self.format_error(e))?;
                kernels.tl2_gemm(&w, &a, out)?;
            }
            GgmlType::TQ1_0 | GgmlType::TQ2_0 => {
                let kind = if self.ty == GgmlType::TQ1_0 {
                    TqKind::Tq1_0
                } else {
                    TqKind::Tq2_0
                };
                let w = TqMatrix::new(kind, bytes, self.shape).map_err(|e| self.format_error(e))?;
                let a =
                    Q8kActivations::quantize(x, k, contract).map_err(|e| self.format_error(e))?;
                kernels.tq_gemm(&w, &a, out)?;
            }
            GgmlType::Q8_0 => {
                let w = Q8_0Matrix::new(bytes, self.shape).map_err(|e| self.format_error(e))?;
                let a = Q8_0Activations::quantize(x, k).map_err(|e| self.format_error(e))?;
                kernels.q8_0_gemm(&w, &a, out)?;
            }
            GgmlType::Q6_K => {
                let w = Q6KMatrix::new(bytes, self.shape).map_err(|e| self.format_error(e))?;
                let a =
                    Q8kActivations::quantize(x, k, contract).map_err(|e| self.format_error(e))?;
                kernels.q6k_gemm(&w, &a, out)?;
            }
            GgmlType::F16 => {
                let w = DenseMatrix::new(self.values::<f16>(bytes)?, self.shape)?;
                kernels.f16_gemm(&w, x, out)?;
            }
            _ => {
                let w = DenseMatrix::new(self.values::<f32>(bytes)?, self.shape)?;
                kernels.f32_gemm(&w, x, out)?;
            }
        }
        self.apply_scale(out);
        Ok(())
    }

    /// [`Linear::apply`] of several matrices to one input, `outs[i]` receiving `linears[i]`'s
    /// product: I2_S matrices of one width share one quantization of it, the one each of the
    /// reference's products makes.
    pub fn apply_each<const N: usize>(
        linears: [&Linear; N],
        file_bytes: &[u8],
        kernels: &CpuKernels,
        x: &[f32],
        mut outs: [&mut Vec<f32>; N],
    ) -> Result<(), ModelError> {
        let Some(first) = linears.first() else {
            return Ok(());
        };
        let k = first.shape.ne0;
        if !linears
            .iter()
            .all(|l| l.ty == GgmlType::I2_S && l.shape.ne0 == k)
        {
            for (out, linear) in outs.into_iter().zip(linears) {
                linear.apply(file_bytes, kernels, x, out)?;
            }
            return Ok(());
        }
        let a = quantize_i8s(kernels, x, k).map_err(|e| first.format_error(e))?;
        if a.tokens() != 1 {
            for (out, linear) in outs.into_iter().zip(linears) {
                linear.apply_i2s(file_bytes, kernels, &a, out)?;
            }
            return Ok(());
        }
        // One token: every matrix's rows in one dispatch over the team.
        let ws = linears
            .iter()
            .map(|l| l.i2s_matrix(file_bytes))
            .collect::<Result<Vec<_>, _>>()?;
        for (out, linear) in outs.iter_mut().zip(linears) {
            // Every row is written below, so what the buffer holds is not cleared first.
            out.resize(linear.shape.ne1, 0.0);
        }
        kernels.i2s_gemv_each(&ws, &a, &mut outs.each_mut().map(|o| o.as_mut_slice()))?;
        for (out, linear) in outs.into_iter().zip(linears) {
            linear.apply_scale(out);
        }
        Ok(())
    }

    /// The I2_S view of this matrix's bytes.
    fn i2s_matrix<'a>(&self, file_bytes: &'a [u8]) -> Result<I2sMatrix<'a>, ModelError> {
        let packed = &file_bytes[self.bytes.clone()];
        I2sMatrix::with_known_scale(packed, self.shape, self.i2s_layout, self.i2s_scale)
            .map_err(|e| self.format_error(e))
    }

    /// How the rows lie in memory, for an I2_S matrix.
    pub fn i2s_layout(&self) -> I2sLayout {
        self.i2s_layout
    }

    /// Groups the rows of this I2_S matrix in fours ([`I2sLayout::Quads`]) within `file_bytes`,
    /// the writable bytes of its resident file; other types stay as they are.
    pub(crate) fn group_i2s_rows(&mut self, file_bytes: &mut [u8]) -> Result<(), ModelError> {
        if self.ty != GgmlType::I2_S || self.i2s_layout == I2sLayout::Quads {
            return Ok(());
        }
        interleave_quads(&mut file_bytes[self.bytes.clone()], self.shape)
            .map_err(|e| self.format_error(e))?;
        self.i2s_layout = I2sLayout::Quads;
        Ok(())
    }

    /// This I2_S matrix times quantized activations, into `out`.
    fn apply_i2s(
        &self,
        file_bytes: &[u8],
        kernels: &CpuKernels,
        a: &I8sActivations,
        out: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        let w = self.i2s_matrix(file_bytes)?;
        // The product writes every value, so what the buffer holds is not cleared first.
        out.resize(a.tokens() * self.shape.ne1, 0.0);
        kernels.i2s_gemm(&w, a, out)?;
        self.apply_scale(out);
        Ok(())
    }

    /// Multiplies `out` by the per-tensor scale, if the file has one.
    fn apply_scale(&self, out: &mut [f32]) {
        if let Some(scale) = self.scale {
            out.iter_mut().for_each(|v| *v *= scale);
        }
    }

    /// Row `row` as f32, as the reference's `get_rows` produces it (for embedding lookups of
    /// dense, Q8_0 and Q6_K matrices).
    pub fn row_f32(&self, file_bytes: &[u8], row: usize) -> Result<Vec<f32>, ModelError> {
        let bytes = &file_bytes[self.bytes.clone()];
        let k = self.shape.ne0;
        match self.ty {
            GgmlType::Q8_0 => Q8_0Matrix::new(bytes, self.shape)
                .and_then(|w| w.dequantize_row(row))
                .map_err(|e| self.format_error(e)),
            GgmlType::Q6_K => Q6KMatrix::new(bytes, self.shape)
                .and_then(|w| w.dequantize_row(row))
                .map_err(|e| self.format_error(e)),
            GgmlType::F16 => Ok(self.values::<f16>(bytes)?[row * k..(row + 1) * k]
                .iter()
                .map(|v| v.to_f32())
                .collect()),
            GgmlType::F32 => Ok(self.values::<f32>(bytes)?[row * k..(row + 1) * k].to_vec()),
            ty => Err(ModelError::UnsupportedType {
                tensor: self.name.clone(),
                ty,
            }),
        }
    }

    /// Validates the bytes against the format once, at load time; the weight scale an I2_S
    /// matrix's bytes end with (0 for other types).
    fn check(&self, file_bytes: &[u8]) -> Result<f32, ModelError> {
        fn none<T>(_: T) -> f32 {
            0.0
        }
        let bytes = &file_bytes[self.bytes.clone()];
        match self.ty {
            GgmlType::I2_S => I2sMatrix::new(bytes, self.shape)
                .map(|w| w.scale())
                .map_err(|e| self.format_error(e)),
            GgmlType::TL1 => self.tl1_matrix(bytes).map(none),
            GgmlType::TL2 => self.tl2_matrix(bytes).map(none),
            GgmlType::TQ1_0 => TqMatrix::new(TqKind::Tq1_0, bytes, self.shape)
                .map(none)
                .map_err(|e| self.format_error(e)),
            GgmlType::TQ2_0 => TqMatrix::new(TqKind::Tq2_0, bytes, self.shape)
                .map(none)
                .map_err(|e| self.format_error(e)),
            GgmlType::Q8_0 => Q8_0Matrix::new(bytes, self.shape)
                .map(none)
                .map_err(|e| self.format_error(e)),
            GgmlType::Q6_K => Q6KMatrix::new(bytes, self.shape)
                .map(none)
                .map_err(|e| self.format_error(e)),
            GgmlType::F16 => self.values::<f16>(bytes).map(none),
            _ => self.values::<f32>(bytes).map(none),
        }
    }

    /// The TL1 view of the bytes, with the tiling resolved at load time.
    fn tl1_matrix<'a>(&self, bytes: &'a [u8]) -> Result<Tl1Matrix<'a>, ModelError> {
        let tiling = self.resolved(self.tl1)?;
        Tl1Matrix::new(tiling, bytes, self.shape).map_err(|e| self.format_error(e))
    }

    /// The TL2 view of the bytes, with the tiling resolved at load time.
    fn tl2_matrix<'a>(&self, bytes: &'a [u8]) -> Result<Tl2Matrix<'a>, ModelError> {
        let tiling = self.resolved(self.tl2)?;
        Tl2Matrix::new(tiling, bytes, self.shape).map_err(|e| self.format_error(e))
    }

    /// A tiling resolved at load time ([`ModelError::MissingTiling`] if it was not).
    fn resolved<T: LutTiling>(&self, tiling: Option<T>) -> Result<T, ModelError> {
        tiling.ok_or_else(|| missing_tiling::<T>(&self.name, self.shape.ne1, self.shape.ne0))
    }

    /// The data as a slice of `T`, without copying.
    fn values<'a, T: FromBytes + zerocopy::Immutable>(
        &self,
        bytes: &'a [u8],
    ) -> Result<&'a [T], ModelError> {
        <[T]>::ref_from_bytes(bytes).map_err(|_| ModelError::Misaligned {
            tensor: self.name.clone(),
            ty: self.ty,
        })
    }

    fn format_error(&self, source: crate::formats::FormatError) -> ModelError {
        ModelError::Format {
            tensor: self.name.clone(),
            source,
        }
    }
}

/// The tiling `table` gives tensor `name` of `rows` × `cols`.
fn tiling_of<T: LutTiling>(
    table: &LutTilings<T>,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<T, ModelError> {
    table
        .get(rows, cols)
        .ok_or_else(|| missing_tiling::<T>(name, rows, cols))
}

fn missing_tiling<T: LutTiling>(name: &str, rows: usize, cols: usize) -> ModelError {
    ModelError::MissingTiling {
        format: T::FORMAT,
        tensor: name.into(),
        rows,
        cols,
    }
}

/// `out` as `len` zeros, in the memory it already has where that is enough.
fn reset(out: &mut Vec<f32>, len: usize) {
    out.clear();
    out.resize(len, 0.0);
}

/// `x` quantized as I8_S, tokens split over the kernels' threads when there are many.
fn quantize_i8s(kernels: &CpuKernels, x: &[f32], k: usize) -> Result<I8sActivations, FormatError> {
    let contract = kernels.numerics().contract;
    I8sActivations::quantize_split(x, k, contract, |codes, quantize| {
        kernels.map_row_chunks(codes, k, quantize)
    })
}
