//! The promotion domain: coupon policies and coupons, point accounts, products, time sales
//! and their orders. Pure and synchronous: every decision is a plain function of the current
//! state and a command; anything from outside (the time, a product's price, new ids) is put
//! into the command by the caller. The cqrs-es `Aggregate` impls only call those functions.

pub mod coupon;
mod error;
pub mod points;
pub mod product;
pub mod time_sale;
pub mod values;
pub mod wire;

pub use error::{DomainError, RefusalKind};

/// Implements cqrs-es's `Aggregate` (and `DomainEvent` for its event) over the aggregate's own
/// pure `decide` / `apply_event`, so the framework and the single writer run the same rules.
macro_rules! cqrs_aggregate {
    ($aggregate:ty, $category:literal, $command:ty, $event:ty) => {
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
                $crate::wire::CURRENT_VERSION.to_string()
            }
        }
    };
}
pub(crate) use cqrs_aggregate;
