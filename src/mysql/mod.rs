//! The MariaDB/MySQL gate.

use std::sync::Arc;

use crate::front::Shared;
use crate::runtime::Warden;
use crate::services::Service;

/// One service per configured MySQL gate.
pub fn services(_warden: &Arc<Warden>, _shared: &Shared) -> Vec<Service> {
    Vec::new()
}
