//! write(random metadata + tensors) → read gives back identical values and bytes.

use bitnet_engine::gguf::{
    Array, GgmlType, GgufFile, GgufWriter, Layout, Residency, Value, ValueType,
};
use proptest::prelude::*;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        proptest::num::f32::NORMAL.prop_map(Value::F32),
        proptest::num::f64::NORMAL.prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn same_type_items(template: Value, n: usize) -> BoxedStrategy<Vec<Value>> {
    let ty = template.value_type();
    proptest::collection::vec(scalar(), n * 4)
        .prop_map(move |vs| vs.into_iter().filter(|v| v.value_type() == ty).collect())
        .boxed()
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 64, 8, |inner| {
        prop_oneof![
            (scalar(), 0usize..6).prop_flat_map(|(t, n)| {
                let elem = t.value_type();
                same_type_items(t, n).prop_map(move |items| Value::Array(Array { elem, items }))
            }),
            proptest::collection::vec(inner, 0..4).prop_map(|items| {
                let arrays = items
                    .into_iter()
                    .filter_map(|v| matches!(v, Value::Array(_)).then_some(v))
                    .collect();
                Value::Array(Array {
                    elem: ValueType::Array,
                    items: arrays,
                })
            }),
        ]
    })
}

fn tensor() -> impl Strategy<Value = (GgmlType, Vec<u64>)> {
    let ty = prop_oneof![
        Just(GgmlType::F32),
        Just(GgmlType::F16),
        Just(GgmlType::Q8_0),
        Just(GgmlType::TQ1_0),
        Just(GgmlType::TQ2_0),
        Just(GgmlType::I2_S),
    ];
    (ty, 1usize..4, 1u64..4, 1u64..5).prop_map(|(ty, n_dims, blocks, rest)| {
        let mut dims = vec![blocks * ty.block_len().max(4)];
        dims.extend(std::iter::repeat_n(rest, n_dims - 1));
        (ty, dims)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn write_then_read_is_identity(
        kvs in proptest::collection::btree_map("[a-z.]{1,10}", value(), 0..8),
        tensors in proptest::collection::vec(tensor(), 0..5),
        alignment in prop_oneof![Just(32u32), Just(64), Just(8)],
        seed in any::<u8>(),
    ) {
        let mut w = GgufWriter::new();
        w.set("general.alignment", Value::U32(alignment)).unwrap();
        for (k, v) in &kvs {
            w.set(k, v.clone()).unwrap();
        }
        let mut expected = Vec::new();
        for (i, (ty, dims)) in tensors.iter().enumerate() {
            let n = ty.tensor_bytes(dims).unwrap() as usize;
            let data: Vec<u8> = (0..n).map(|j| (j as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let name = format!("blk.{i}.weight");
            w.add_tensor(&name, *ty, dims, data.clone()).unwrap();
            expected.push((name, *ty, dims.clone(), data));
        }
        let bytes = w.to_bytes();
        let layout = Layout::parse(&bytes).unwrap();
        prop_assert!(layout.validate().is_empty(), "{:?}", layout.validate());
        prop_assert_eq!(layout.version, 3);
        prop_assert_eq!(layout.alignment, u64::from(alignment));
        for (k, v) in &kvs {
            prop_assert_eq!(layout.metadata.get(k), Some(v));
        }
        prop_assert_eq!(layout.tensors.len(), expected.len());
        for (info, (name, ty, dims, data)) in layout.tensors.iter().zip(&expected) {
            prop_assert_eq!(&info.name, name);
            prop_assert_eq!(info.ty, *ty);
            prop_assert_eq!(&info.dims, dims);
            prop_assert_eq!(info.file_offset % u64::from(alignment), 0);
            let start = info.file_offset as usize;
            prop_assert_eq!(&bytes[start..start + data.len()], data.as_slice());
        }
    }
}

#[test]
fn written_file_opens_mapped_or_resident_with_zero_copy_slices() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("bitnet".into()))
        .unwrap();
    w.set("general.file_type", Value::U32(40)).unwrap();
    let codes = vec![0b1001_0110u8; 256 * 2 / 4 + 32];
    w.add_tensor(
        "blk.0.ffn_up.weight",
        GgmlType::I2_S,
        &[256, 2],
        codes.clone(),
    )
    .unwrap();
    w.write_file(&path).unwrap();
    assert!(!dir.path().join("t.gguf.partial").exists());

    let mapped = GgufFile::open(&path).unwrap();
    let resident = GgufFile::open_in(&path, Residency::HugePages).unwrap();
    assert_eq!(resident.bytes(), mapped.bytes());
    for f in [mapped, resident] {
        assert_eq!(
            f.layout().type_table.table,
            bitnet_engine::gguf::TypeTable::Bitnet
        );
        let data = f.tensor_bytes("blk.0.ffn_up.weight").unwrap();
        assert_eq!(data, codes.as_slice());
        let map = f.bytes().as_ptr_range();
        assert!(
            map.contains(&data.as_ptr()),
            "tensor data must point into the file's bytes"
        );
    }
    let missing = dir.path().join("missing.gguf");
    for residency in [Residency::Mapped, Residency::HugePages] {
        let error = GgufFile::open_in(&missing, residency).err().unwrap();
        assert!(error.to_string().contains("missing.gguf"), "{error}");
    }
}

#[test]
fn writer_rejects_wrong_sizes_and_mixed_arrays() {
    let mut w = GgufWriter::new();
    let e = w
        .add_tensor("x", GgmlType::I2_S, &[128, 2], vec![0; 64])
        .unwrap_err();
    assert!(e.to_string().contains("takes 96"), "{e}");
    let e = w
        .add_tensor("y", GgmlType::TQ2_0, &[100], vec![0; 66])
        .unwrap_err();
    assert!(
        e.to_string().contains("multiple of the block length"),
        "{e}"
    );
    let mixed = Value::Array(Array {
        elem: ValueType::U8,
        items: vec![Value::U8(1), Value::I32(2)],
    });
    assert!(w.set("k", mixed).is_err());
    assert!(w.set("general.alignment", Value::U32(48)).is_err());
}
