//! The promotion domain: coupon policies and coupons, point accounts, products, time sales
//! and their orders. Pure and synchronous: every decision is a plain function of the current
//! state and a command; anything from outside (the time, a product's price, new ids) is put
//! into the command by the caller. The cqrs-es `Aggregate` impls only call those functions.

pub mod coupon;
pub mod deadline;
mod error;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod points;
pub mod product;
pub mod time_sale;
pub mod values;
pub mod wire;

pub use error::{DomainError, RefusalKind};

/// What the write side needs of an aggregate: decide commands from the current state, apply
/// events, and name the entity (coupon, order) an event creates inside the aggregate, so the
/// command side can find the aggregate from that entity's id later.
pub trait Decide: Default + Clone + Send + Sync + 'static {
    type Command: Send + 'static;
    type Event: wire::WireCodec + Clone + Send + Sync + std::fmt::Debug + 'static;
    /// The aggregate category: the Kafka topic suffix and the `category` column of the log.
    const CATEGORY: &'static str;

    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, DomainError>;
    fn apply_event(&mut self, event: Self::Event);
    fn created_entity(event: &Self::Event) -> Option<uuid::Uuid>;
}

/// Implements [`Decide`] and cqrs-es's `Aggregate` (and `DomainEvent` for its event) over the
/// aggregate's own pure `decide` / `apply_event`, so the framework and the single writer run
/// the same rules. `$created` maps an event to the entity id it creates, if any.
macro_rules! cqrs_aggregate {
    ($aggregate:ty, $category:literal, $command:ty, $event:ty, $created:expr) => {
        impl $crate::Decide for $aggregate {
            type Command = $command;
            type Event = $event;
            const CATEGORY: &'static str = $category;

            fn decide(
                &self,
                command: Self::Command,
            ) -> Result<Vec<Self::Event>, $crate::DomainError> {
                <$aggregate>::decide(self, command)
            }
            fn apply_event(&mut self, event: Self::Event) {
                <$aggregate>::apply_event(self, event)
            }
            fn created_entity(event: &Self::Event) -> Option<uuid::Uuid> {
                let created: fn(&$event) -> Option<uuid::Uuid> = $created;
                created(event)
            }
        }

        impl cqrs_es::Aggregate for $aggregate {
            const TYPE: &'static str = $category;
            type Command = $command;
            type Event = $event;
            type Error = $crate::DomainError;
            type Services = ();

            async fn handle(
                &mut self,
                command: Self::Command,
                _services: &Self::Services,
                sink: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), Self::Error> {
                for event in self.decide(command)? {
                    sink.write(event, self).await;
                }
                Ok(())
            }

            fn apply(&mut self, event: Self::Event) {
                self.apply_event(event);
            }
        }

        impl cqrs_es::DomainEvent for $event {
            fn event_type(&self) -> String {
                $crate::wire::WireCodec::type_name(self).to_owned()
            }
            fn event_version(&self) -> String {
                $crate::wire::current_version($crate::wire::WireCodec::type_name(self))
                    .unwrap_or($crate::wire::CURRENT_VERSION)
                    .to_string()
            }
        }
    };
}
pub(crate) use cqrs_aggregate;
