//! Products: what a time sale sells. Created once; the price is read by the caller and put
//! into `CreateTimeSale`, so the time sale decides without reaching into another aggregate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::values::{Money, Text};
use crate::DomainError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductSpec {
    pub name: Text,
    pub price: Money,
    pub description: Text,
}

impl ProductSpec {
    pub fn new(name: Text, price: Money, description: Text) -> Result<Self, DomainError> {
        if price.is_zero() {
            return Err(DomainError::invalid("price", "must be greater than 0"));
        }
        Ok(Self {
            name,
            price,
            description,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProductCommand {
    CreateProduct {
        spec: ProductSpec,
        now: DateTime<Utc>,
    },
}

/// Serialized as its wire form (`crate::wire`, which implements serde for it).
#[derive(Debug, Clone, PartialEq)]
pub enum ProductEvent {
    ProductCreated {
        spec: ProductSpec,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    spec: Option<ProductSpec>,
}

impl Product {
    pub fn spec(&self) -> Option<&ProductSpec> {
        self.spec.as_ref()
    }

    pub fn decide(&self, command: ProductCommand) -> Result<Vec<ProductEvent>, DomainError> {
        match command {
            ProductCommand::CreateProduct { .. } if self.spec.is_some() => {
                Err(DomainError::ProductAlreadyExists)
            }
            ProductCommand::CreateProduct { spec, now } => {
                Ok(vec![ProductEvent::ProductCreated { spec, at: now }])
            }
        }
    }

    pub fn apply_event(&mut self, event: ProductEvent) {
        match event {
            ProductEvent::ProductCreated { spec, .. } => self.spec = Some(spec),
        }
    }
}

crate::cqrs_aggregate!(Product, "product", ProductCommand, ProductEvent, |_| None);
