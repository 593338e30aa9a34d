//! The activity's RFC 6902 operations, typed (`json-patch`): the paths are the activity content's
//! (`/status`, `/results/{i}/...`, `/notes/-`).

use json_patch::jsonptr::PointerBuf;
pub use json_patch::PatchOperation;
use json_patch::{AddOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

/// A pointer from its tokens: `at(["results", "-"])` is `/results/-`.
pub fn at<'t>(tokens: impl IntoIterator<Item = &'t str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

/// `/results/{index}/{field}`: a field of one task's entry.
pub fn task_field(index: usize, field: &str) -> PointerBuf {
    at(["results", &index.to_string(), field])
}

/// Adds, or replaces a member that is already there.
pub fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

pub fn replace(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation { path, value })
}

pub fn remove(path: PointerBuf) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation { path })
}
