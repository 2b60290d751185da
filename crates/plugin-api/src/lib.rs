//! The contract between idbridge and native mapping plugins.
//!
//! **ABI.** A plugin is a `cdylib` exporting one symbol, [`ENTRY_SYMBOL`]
//! (`idbridge_plugin_entry_v1`), an `extern "C"` function returning a pointer to a static
//! [`PluginTable`]. The host checks `abi_version` and `struct_size` before it touches any
//! other field. Every call passes JSON bytes; every buffer is freed by the side that
//! allocated it (the host frees plugin buffers through `free_buffer`).
//!
//! **JSON.** `create` receives the plugin's config object; `map` receives a
//! [`wire::MappingInput`] and answers a [`wire::MapperOutput`], or an error object
//! `{"error": {"kind": "config" | "mapping" | "panic", "message", "field"?}}`.
//!
//! **SDK.** Implement [`MappingPlugin`] and call [`export_plugin!`]: it generates the
//! table and entry point, wraps every call in `catch_unwind` so a panic becomes an error
//! instead of aborting the host, and refuses to compile with `panic = "abort"` (where a
//! panic could not be caught).

use std::ffi::c_void;

pub use serde_json;

pub mod wire;

/// Raised whenever the table layout or the JSON contract changes incompatibly.
pub const ABI_VERSION: u32 = 1;

/// The exported entry point's name, NUL-terminated for `dlsym`.
pub const ENTRY_SYMBOL: &[u8] = b"idbridge_plugin_entry_v1\0";

/// Status codes of `create` and `map`.
pub const STATUS_OK: i32 = 0;
pub const STATUS_ERROR: i32 = 1;
pub const STATUS_PANIC: i32 = 2;

/// Bytes owned by the plugin, handed to the host, returned through `free_buffer`.
#[repr(C)]
#[derive(Debug)]
pub struct PluginBuffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl PluginBuffer {
    pub const EMPTY: Self = Self { ptr: std::ptr::null_mut(), len: 0, cap: 0 };

    /// Hands a vector's memory over (the plugin side).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Self { ptr: bytes.as_mut_ptr(), len: bytes.len(), cap: bytes.capacity() }
    }

    /// Takes the memory back (only in the library that allocated it).
    ///
    /// # Safety
    /// `self` must come from [`PluginBuffer::from_vec`] in this same library, once.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: the caller guarantees the triple came from `from_vec` here.
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
    }
}

pub type CreateFn = unsafe extern "C" fn(
    config: *const u8,
    config_len: usize,
    instance: *mut *mut c_void,
    error: *mut PluginBuffer,
) -> i32;
pub type MapFn =
    unsafe extern "C" fn(instance: *mut c_void, input: *const u8, input_len: usize, output: *mut PluginBuffer) -> i32;
pub type DestroyFn = unsafe extern "C" fn(instance: *mut c_void);
pub type FreeBufferFn = unsafe extern "C" fn(buffer: PluginBuffer);

/// What a plugin exports. Fields after `struct_size` may only be read once the host has
/// checked `abi_version` and `struct_size`.
#[repr(C)]
#[derive(Debug)]
pub struct PluginTable {
    pub abi_version: u32,
    pub struct_size: u32,
    /// NUL-terminated UTF-8.
    pub name: *const u8,
    /// NUL-terminated UTF-8.
    pub version: *const u8,
    pub create: CreateFn,
    pub map: MapFn,
    pub destroy: DestroyFn,
    pub free_buffer: FreeBufferFn,
}

// SAFETY: the table is immutable static data and function pointers.
unsafe impl Sync for PluginTable {}

pub type EntryFn = unsafe extern "C" fn() -> *const PluginTable;

/// A plugin's error, as it crosses the boundary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginError {
    /// `config`, `mapping` or `panic`.
    pub kind: String,
    pub message: String,
    /// The config field at fault, for `config` errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl PluginError {
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { kind: "config".into(), message: message.into(), field: Some(field.into()) }
    }

    pub fn mapping(message: impl Into<String>) -> Self {
        Self { kind: "mapping".into(), message: message.into(), field: None }
    }
}

/// What plugin authors implement.
pub trait MappingPlugin: Sized + Send + Sync + 'static {
    /// Builds an instance from the plugin's config object (from the host's config).
    fn create(config: serde_json::Value) -> Result<Self, PluginError>;
    /// Decides for one person.
    fn map(&self, input: wire::MappingInput) -> Result<wire::MapperOutput, PluginError>;
}

/// Runtime for [`export_plugin!`]; not for direct use.
#[doc(hidden)]
pub mod rt {
    use std::ffi::c_void;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use super::*;

    fn error_json(error: &PluginError) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "error": error })).unwrap_or_else(|_| b"{}".to_vec())
    }

    fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned())
    }

    /// # Safety
    /// Called by the host with a valid (ptr, len) and writable out-pointers.
    pub unsafe fn create<P: MappingPlugin>(
        config: *const u8,
        config_len: usize,
        instance: *mut *mut c_void,
        error: *mut PluginBuffer,
    ) -> i32 {
        let result = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the host passes a valid buffer of `config_len` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(config, config_len) };
            let config: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| PluginError::config("", format!("config is not JSON: {e}")))?;
            P::create(config)
        }));
        let (status, err) = match result {
            Ok(Ok(plugin)) => {
                // SAFETY: `instance` is a valid out-pointer.
                unsafe { *instance = Box::into_raw(Box::new(plugin)).cast() };
                return STATUS_OK;
            }
            Ok(Err(e)) => (STATUS_ERROR, e),
            Err(payload) => {
                (STATUS_PANIC, PluginError { kind: "panic".into(), message: panic_message(&*payload), field: None })
            }
        };
        // SAFETY: `error` is a valid out-pointer.
        unsafe { *error = PluginBuffer::from_vec(error_json(&err)) };
        status
    }

    /// # Safety
    /// `instance` came from `create::<P>`; (input, len) is valid; `output` is writable.
    pub unsafe fn map<P: MappingPlugin>(
        instance: *mut c_void,
        input: *const u8,
        input_len: usize,
        output: *mut PluginBuffer,
    ) -> i32 {
        let result = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: as documented above.
            let plugin = unsafe { &*(instance as *const P) };
            let bytes = unsafe { std::slice::from_raw_parts(input, input_len) };
            let input: wire::MappingInput = serde_json::from_slice(bytes)
                .map_err(|e| PluginError::mapping(format!("input is not a MappingInput: {e}")))?;
            plugin.map(input)
        }));
        let (status, bytes) = match result {
            Ok(Ok(out)) => (STATUS_OK, serde_json::to_vec(&out).unwrap_or_else(|_| b"{}".to_vec())),
            Ok(Err(e)) => (STATUS_ERROR, error_json(&e)),
            Err(payload) => (
                STATUS_PANIC,
                error_json(&PluginError { kind: "panic".into(), message: panic_message(&*payload), field: None }),
            ),
        };
        // SAFETY: `output` is a valid out-pointer.
        unsafe { *output = PluginBuffer::from_vec(bytes) };
        status
    }

    /// # Safety
    /// `instance` came from `create::<P>` and is destroyed once.
    pub unsafe fn destroy<P: MappingPlugin>(instance: *mut c_void) {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: as documented above.
            drop(unsafe { Box::from_raw(instance.cast::<P>()) });
        }));
    }

    /// # Safety
    /// `buffer` was produced by this library.
    pub unsafe fn free_buffer(buffer: PluginBuffer) {
        // SAFETY: as documented above.
        drop(unsafe { buffer.into_vec() });
    }
}

/// Exports a [`MappingPlugin`] as an idbridge plugin:
/// `idbridge_plugin_api::export_plugin!(MyPlugin, "my-plugin", "1.0.0");`
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty, $name:literal, $version:literal) => {
        #[cfg(panic = "abort")]
        compile_error!(
            "idbridge plugins must be built with panic = \"unwind\": a panic under abort would kill the host"
        );

        const _: () = {
            unsafe extern "C" fn __idb_create(
                config: *const u8,
                config_len: usize,
                instance: *mut *mut ::std::ffi::c_void,
                error: *mut $crate::PluginBuffer,
            ) -> i32 {
                unsafe { $crate::rt::create::<$plugin>(config, config_len, instance, error) }
            }
            unsafe extern "C" fn __idb_map(
                instance: *mut ::std::ffi::c_void,
                input: *const u8,
                input_len: usize,
                output: *mut $crate::PluginBuffer,
            ) -> i32 {
                unsafe { $crate::rt::map::<$plugin>(instance, input, input_len, output) }
            }
            unsafe extern "C" fn __idb_destroy(instance: *mut ::std::ffi::c_void) {
                unsafe { $crate::rt::destroy::<$plugin>(instance) }
            }
            unsafe extern "C" fn __idb_free(buffer: $crate::PluginBuffer) {
                unsafe { $crate::rt::free_buffer(buffer) }
            }
            static __IDB_TABLE: $crate::PluginTable = $crate::PluginTable {
                abi_version: $crate::ABI_VERSION,
                struct_size: ::std::mem::size_of::<$crate::PluginTable>() as u32,
                name: concat!($name, "\0").as_ptr(),
                version: concat!($version, "\0").as_ptr(),
                create: __idb_create,
                map: __idb_map,
                destroy: __idb_destroy,
                free_buffer: __idb_free,
            };
            #[unsafe(no_mangle)]
            pub extern "C" fn idbridge_plugin_entry_v1() -> *const $crate::PluginTable {
                &__IDB_TABLE
            }
        };
    };
}
