//! Errors of the GPU runtime: every failure a user can cause or meet comes back
//! as a `GpuError`, never as a panic.

use thiserror::Error;

/// How to get a software adapter on a machine without a GPU.
pub const INSTALL_HINT: &str =
    "no GPU adapter found. On a machine without a GPU install Mesa's software \
     Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers libvulkan1`) and run with \
     WGPU_BACKEND=vulkan; `audionas devices` lists what wgpu can see";

#[derive(Debug, Error)]
pub enum GpuError {
    #[error("{INSTALL_HINT} (backends asked for: {backends})")]
    NoAdapter { backends: String },
    #[error("no adapter matches `{wanted}`; available: {available}")]
    AdapterNotFound { wanted: String, available: String },
    #[error("unknown backend `{0}`: use vulkan, metal, dx12, gl or auto")]
    UnknownBackend(String),
    #[error("could not open a device on `{adapter}`: {reason}")]
    RequestDevice { adapter: String, reason: String },
    #[error("{what} needs {bytes} bytes but this adapter allows at most {limit} bytes per storage binding (max_storage_buffer_binding_size); use a smaller batch or model")]
    TooLarge {
        what: String,
        bytes: u64,
        limit: u64,
    },
    #[error("the GPU ran out of memory: {0}; use a smaller batch or model")]
    OutOfMemory(String),
    #[error("shader `{shader}` entry `{entry}` failed to compile: {message}")]
    Shader {
        shader: String,
        entry: String,
        message: String,
    },
    #[error("GPU validation error: {0}")]
    Validation(String),
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
    #[error("{0}")]
    Shape(String),
    /// Calls in an order that does not work (a backward without a forward).
    #[error("{0}")]
    Order(String),
}

pub type GpuResult<T> = Result<T, GpuError>;

/// Fails with a `Shape` error naming what is wrong when `ok` is false.
pub fn ensure(ok: bool, message: impl FnOnce() -> String) -> GpuResult<()> {
    if ok {
        Ok(())
    } else {
        Err(GpuError::Shape(message()))
    }
}
