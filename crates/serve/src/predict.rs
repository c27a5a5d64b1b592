//! Predict models (`ModelKind::Predict` listings): an MLP from flock-ml, served by
//! `/v1/predict`.
//!
//! # Model directory
//! ```text
//! predict.json        {"format": "flock-mlp-v1", "inputs": 4, "hidden": [16],
//!                      "task": "regression", "outputs": 1}
//!                  or {"format": "flock-mlp-v1", "inputs": 4, "hidden": [16],
//!                      "task": "classification", "classes": 3, "labels": ["a", "b", "c"]}
//! model.safetensors   the parameters as a flock update (ml-core's safetensors form, what an
//!                     FL Alliance round adopts): `layers.{i}.weight` [out, in] and
//!                     `layers.{i}.bias` [out], F32/F16/BF16, checked for shape and finiteness
//! ```
//! `labels` is optional. A request is `{"model": NAME, "inputs": [[f32; inputs], ...]}`; the
//! answer has `outputs` (one row of raw outputs per input row: values for regression, logits
//! for classification) and, for classification, `predictions` (the arg-max class of each row,
//! with its label when there are labels). Each input row is metered as one call.

use burn::tensor::{Tensor, TensorData};
use flock_ml::mlp::{Mlp, MlpTask};
use flock_ml_core::{ArtifactLimits, Update};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The spec file's name.
pub const PREDICT_SPEC: &str = "predict.json";
/// The spec's format tag.
pub const PREDICT_FORMAT: &str = "flock-mlp-v1";
/// Largest MLP served (parameters).
const MAX_PARAMS: u64 = 50_000_000;

/// What the MLP predicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum PredictTask {
    /// Real-valued outputs.
    Regression {
        /// Outputs per row.
        outputs: usize,
    },
    /// Class logits.
    Classification {
        /// Number of classes.
        classes: usize,
        /// Class names (optional; as many as classes).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        labels: Vec<String>,
    },
}

/// `predict.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictSpec {
    /// Always [`PREDICT_FORMAT`].
    pub format: String,
    /// Features per input row.
    pub inputs: usize,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// What it predicts.
    #[serde(flatten)]
    pub task: PredictTask,
}

impl PredictSpec {
    /// The flock-ml task.
    pub fn mlp_task(&self) -> MlpTask {
        match &self.task {
            PredictTask::Regression { outputs } => MlpTask::Regression { outputs: *outputs },
            PredictTask::Classification { classes, .. } => {
                MlpTask::Classification { classes: *classes }
            }
        }
    }

    /// Outputs per row.
    pub fn outputs(&self) -> usize {
        match &self.task {
            PredictTask::Regression { outputs } => *outputs,
            PredictTask::Classification { classes, .. } => *classes,
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.format != PREDICT_FORMAT {
            return Err(format!("format is {:?}, expected {PREDICT_FORMAT:?}", self.format));
        }
        if self.inputs == 0 || self.outputs() == 0 || self.hidden.contains(&0) {
            return Err("inputs, outputs and hidden widths must be at least 1".into());
        }
        if self.inputs > 1 << 20 || self.outputs() > 1 << 20 || self.hidden.len() > 64 {
            return Err("the MLP is too large to serve".into());
        }
        if let PredictTask::Classification { classes, labels } = &self.task {
            if !labels.is_empty() && labels.len() != *classes {
                return Err(format!("{} labels for {classes} classes", labels.len()));
            }
        }
        Ok(())
    }
}

/// A loaded predict model.
#[derive(Debug)]
pub struct PredictModel {
    /// Its spec.
    pub spec: PredictSpec,
    mlp: Mlp,
}

/// Whether `dir` holds a predict model (has `predict.json`).
pub fn is_predict_dir(dir: &Path) -> bool {
    dir.join(PREDICT_SPEC).is_file()
}

/// Writes a predict model directory (`predict.json` + `model.safetensors`).
pub fn save_predict_model(dir: &Path, spec: &PredictSpec, mlp: &Mlp) -> Result<(), String> {
    spec.check()?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let json = serde_json::to_vec_pretty(spec).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(PREDICT_SPEC), json).map_err(|e| e.to_string())?;
    let update = mlp.to_update().map_err(|e| e.to_string())?;
    std::fs::write(dir.join("model.safetensors"), update.to_safetensors_default())
        .map_err(|e| e.to_string())
}

impl PredictModel {
    /// Loads a predict model directory, checking the weights against the spec.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let spec_path = dir.join(PREDICT_SPEC);
        let meta = std::fs::metadata(&spec_path).map_err(|e| format!("{PREDICT_SPEC}: {e}"))?;
        if meta.len() > 1 << 20 {
            return Err(format!("{PREDICT_SPEC} is larger than 1 MiB"));
        }
        let text = std::fs::read(&spec_path).map_err(|e| format!("{PREDICT_SPEC}: {e}"))?;
        let spec: PredictSpec =
            serde_json::from_slice(&text).map_err(|e| format!("{PREDICT_SPEC}: {e}"))?;
        spec.check()?;
        let device = flock_ml::cpu();
        let mlp = Mlp::new(spec.inputs, &spec.hidden, spec.mlp_task(), 0, &device);
        let layout = mlp.layout();
        if layout.numel() as u64 > MAX_PARAMS {
            return Err(format!("the MLP has more than {MAX_PARAMS} parameters"));
        }
        let bytes = std::fs::read(dir.join("model.safetensors"))
            .map_err(|e| format!("model.safetensors: {e}"))?;
        let limits = ArtifactLimits::for_params(layout.numel() as u64);
        let update = Update::from_safetensors(&bytes, &layout, &limits)
            .map_err(|e| format!("model.safetensors: {e}"))?;
        let mlp = mlp.load_update(&update).map_err(|e| format!("model.safetensors: {e}"))?;
        Ok(Self { spec, mlp })
    }

    /// Outputs for `rows` (each `inputs` finite values; checked by the caller).
    pub fn predict(&self, rows: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, String> {
        let n = rows.len();
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let x =
            Tensor::<2>::from_data(TensorData::new(flat, [n, self.spec.inputs]), &flock_ml::cpu());
        let out = flock_ml::model::to_vec(self.mlp.forward(x)).map_err(|e| e.to_string())?;
        let k = self.spec.outputs();
        Ok(out.chunks(k).map(<[f32]>::to_vec).collect())
    }
}
