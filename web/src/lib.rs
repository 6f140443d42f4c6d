//! ios-web: the gateway's REST API, OpenAPI document and UI.
//!
//! Not built yet: the first routes arrive with the platform issue. It exists
//! so the workspace has its final shape and dependency order.

pub use ios_node as node;
