//! The product's event on the wire: `product.created`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::*;
use crate::product::{ProductEvent, ProductSpec};
use crate::values::{Money, Text};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProductCreatedV1 {
    name: Text,
    price: Money,
    description: Text,
    created_at: DateTime<Utc>,
}

impl WireCodec for ProductEvent {
    fn type_name(&self) -> &'static str {
        match self {
            ProductEvent::ProductCreated { .. } => PRODUCT_CREATED,
        }
    }

    fn to_wire(&self) -> WireEvent {
        match self.clone() {
            ProductEvent::ProductCreated { spec, at } => encode(
                self.type_name(),
                ProductCreatedV1 {
                    name: spec.name,
                    price: spec.price,
                    description: spec.description,
                    created_at: at,
                },
            ),
        }
    }

    fn from_wire(wire: &WireEvent) -> Result<Self, WireError> {
        let wire = &*upcast(wire)?;
        if wire.event_type != PRODUCT_CREATED {
            return Err(unknown(wire));
        }
        let d: ProductCreatedV1 = decode(wire)?;
        let spec = ProductSpec::new(d.name, d.price, d.description).map_err(invalid(wire))?;
        Ok(ProductEvent::ProductCreated {
            spec,
            at: d.created_at,
        })
    }
}
