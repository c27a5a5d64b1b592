use super::*;
use crate::update::{ParamSpec, Update};
use safetensors::tensor::TensorView;

fn layout() -> Layout {
    Layout::new(vec![ParamSpec::new("w", [2, 2]), ParamSpec::new("b", [2])]).unwrap()
}

fn good_bytes() -> Vec<u8> {
    Update::new(Arc::new(layout()), vec![1.0, 2.0, 3.0, 4.0, 0.5, -0.5])
        .unwrap()
        .to_safetensors_default()
}

/// Serializes raw tensors with the safetensors crate (any dtype).
fn raw(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, &None).unwrap()
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn limits() -> ArtifactLimits {
    ArtifactLimits::default()
}

#[test]
fn accepts_a_good_update_in_layout_order() {
    let a = validate(&good_bytes(), Some(&layout()), &limits()).unwrap();
    assert_eq!(a.values(), &[1.0, 2.0, 3.0, 4.0, 0.5, -0.5]);
    assert_eq!(a.metadata().get("format").map(String::as_str), Some("flock-update-v1"));
    assert_eq!(a.hash(), Hash::of(&good_bytes()));
    assert!(!a.widened());
    assert_eq!(a.num_params(), 6);
}

#[test]
fn without_expected_layout_uses_name_order() {
    let a = validate(&good_bytes(), None, &limits()).unwrap();
    let names: Vec<&str> = a.layout().params().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["b", "w"]);
    assert_eq!(a.values(), &[0.5, -0.5, 1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn size_is_checked_before_parsing() {
    let lim = ArtifactLimits { max_bytes: 10, ..limits() };
    // Garbage that would also fail parsing: the size error must win.
    let err = validate(&[0xff; 11], None, &lim).unwrap_err();
    assert_eq!(err, ArtifactError::TooLarge { size: 11, max: 10 });
    assert_eq!(err.code(), "too_large");
}

#[test]
fn garbage_truncation_pickle_and_zip_are_not_safetensors() {
    let mut truncated = good_bytes();
    truncated.truncate(truncated.len() - 3);
    let pickle = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.".to_vec();
    let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00archive/data.pkl".to_vec();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "shorter than the 8-byte header"),
        (b"hello".to_vec(), "shorter than the 8-byte header"),
        ((0..64u8).map(|i| i.wrapping_mul(37)).collect(), "runs past the end"),
        (truncated, "does not exactly cover"),
        (pickle, "pickle"),
        (zip, "zip archive"),
    ];
    for (bytes, want) in cases {
        let err = validate(&bytes, None, &limits()).unwrap_err();
        assert_eq!(err.code(), "not_safetensors", "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("not a safetensors file: "), "{msg}");
        assert!(msg.contains(want), "{msg} should mention {want}");
    }
}

#[test]
fn non_json_header_is_rejected() {
    let mut bytes = 8u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"[1,2,3] ");
    let err = validate(&bytes, None, &limits()).unwrap_err();
    assert_eq!(err.code(), "not_safetensors");
    let mut bytes = 8u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"a\":1} ");
    assert_eq!(validate(&bytes, None, &limits()).unwrap_err().code(), "not_safetensors");
}

#[test]
fn header_length_is_bounded() {
    let lim = ArtifactLimits { max_header_bytes: 16, ..limits() };
    let err = validate(&good_bytes(), None, &lim).unwrap_err();
    assert!(matches!(err, ArtifactError::HeaderTooLarge { max: 16, .. }), "{err}");
    assert_eq!(err.code(), "header_too_large");
}

#[test]
fn unsupported_dtype_names_the_tensor() {
    let bytes = raw(&[("ids", Dtype::I64, vec![2], vec![0; 16])]);
    let err = validate(&bytes, None, &limits()).unwrap_err();
    assert_eq!(err, ArtifactError::UnsupportedDtype { tensor: "ids".into(), dtype: "I64".into() });
    assert!(err.to_string().contains("`ids`"));
}

#[test]
fn shape_errors_are_precise() {
    let l = layout();
    let missing = raw(&[("w", Dtype::F32, vec![2, 2], f32s(&[0.0; 4]))]);
    assert_eq!(
        validate(&missing, Some(&l), &limits()).unwrap_err(),
        ArtifactError::MissingTensor { tensor: "b".into(), expected: vec![2] }
    );
    let wrong = raw(&[
        ("w", Dtype::F32, vec![4], f32s(&[0.0; 4])),
        ("b", Dtype::F32, vec![2], f32s(&[0.0; 2])),
    ]);
    let err = validate(&wrong, Some(&l), &limits()).unwrap_err();
    assert_eq!(
        err,
        ArtifactError::ShapeMismatch { tensor: "w".into(), expected: vec![2, 2], found: vec![4] }
    );
    assert_eq!(err.to_string(), "tensor `w` has shape [4], expected [2, 2]");
    let extra = raw(&[
        ("w", Dtype::F32, vec![2, 2], f32s(&[0.0; 4])),
        ("b", Dtype::F32, vec![2], f32s(&[0.0; 2])),
        ("evil", Dtype::F32, vec![1], f32s(&[0.0])),
    ]);
    let err = validate(&extra, Some(&l), &limits()).unwrap_err();
    assert_eq!(err, ArtifactError::UnexpectedTensor { tensor: "evil".into(), found: vec![1] });
    assert_eq!(err.code(), "unexpected_tensor");
}

#[test]
fn max_params_is_enforced() {
    let lim = ArtifactLimits { max_params: 5, ..limits() };
    let err = validate(&good_bytes(), None, &lim).unwrap_err();
    assert_eq!(err, ArtifactError::TooManyParams { params: 6, max: 5 });
    assert_eq!(err.to_string(), "model has 6 parameters, over the task's max_params 5");
    assert!(validate(&good_bytes(), None, &ArtifactLimits::for_params(6)).is_ok());
}

#[test]
fn non_finite_values_name_tensor_and_index() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let u = Update::new(Arc::new(layout()), vec![1.0, 2.0, 3.0, 4.0, 0.5, bad]).unwrap();
        let err = validate(&u.to_safetensors_default(), Some(&layout()), &limits()).unwrap_err();
        match &err {
            ArtifactError::NonFinite { tensor, index, value } => {
                assert_eq!((tensor.as_str(), *index), ("b", 1));
                assert_eq!(value.to_bits(), bad.to_bits());
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(err.code(), "non_finite");
    }
}

#[test]
fn f16_and_bf16_are_widened() {
    let h: Vec<u8> =
        [1.5f32, -2.0].iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
    let b: Vec<u8> = [0.25f32, 3.0, 4.0, -8.0]
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
        .collect();
    let bytes = raw(&[("b", Dtype::F16, vec![2], h), ("w", Dtype::BF16, vec![2, 2], b)]);
    let a = validate(&bytes, Some(&layout()), &limits()).unwrap();
    assert_eq!(a.values(), &[0.25, 3.0, 4.0, -8.0, 1.5, -2.0]);
    assert!(a.widened());
    // f16 overflow to infinity is caught too.
    let inf = half::f16::INFINITY.to_le_bytes().repeat(2);
    let bytes =
        raw(&[("b", Dtype::F16, vec![2], inf), ("w", Dtype::F32, vec![2, 2], f32s(&[0.0; 4]))]);
    assert_eq!(validate(&bytes, Some(&layout()), &limits()).unwrap_err().code(), "non_finite");
}

#[test]
fn decode_through_update_checks_everything() {
    let l = layout();
    let u = Update::from_safetensors(&good_bytes(), &l, &limits()).unwrap();
    assert_eq!(u.param("b"), Some(&[0.5f32, -0.5][..]));
    let other = Layout::new(vec![ParamSpec::new("w", [2, 2])]).unwrap();
    let err = Update::from_safetensors(&good_bytes(), &other, &limits()).unwrap_err();
    assert_eq!(err.code(), "unexpected_tensor");
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Random bytes and random corruptions of a valid file never panic.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = validate(&bytes, None, &limits());
            let _ = validate(&bytes, Some(&layout()), &limits());
        }

        #[test]
        fn corrupted_files_never_panic(
            pos in 0usize..200,
            byte in any::<u8>(),
            cut in 0usize..200,
        ) {
            let mut bytes = good_bytes();
            let len = bytes.len();
            bytes[pos % len] = byte;
            bytes.truncate(len - cut % len);
            let _ = validate(&bytes, Some(&layout()), &limits());
        }
    }
}
