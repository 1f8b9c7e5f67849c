//! Products, flash sales ("time sales") and their orders.

use chrono::{DateTime, Utc};
use domain::product::{Product, ProductCommand, ProductSpec};
use domain::time_sale::{OrderStatus, TimeSaleCommand, TimeSaleEvent, TimeSaleSpec};
use domain::values::{Money, Quantity, Text, UserId};
use domain::DomainError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{changing, creating, Call, CommandError, Commands, Routed, Written};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProduct {
    #[schema(schema_with = domain::openapi::text)]
    pub name: String,
    #[schema(minimum = 1)]
    pub price: i64,
    #[serde(default)]
    #[schema(schema_with = domain::openapi::optional_text)]
    pub description: String,
}

/// A flash sale of a product: its price, its stock and its window.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTimeSale {
    pub product_id: Uuid,
    /// Below the product's price.
    #[schema(minimum = 1)]
    pub discount_price: i64,
    #[schema(minimum = 1, maximum = 4_294_967_295_i64)]
    pub quantity: i64,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    /// Units one buyer may hold at most; no limit when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4_294_967_295_i64)]
    pub per_user_limit: Option<i64>,
}

/// An order of a user from a flash sale.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrder {
    pub time_sale_id: Uuid,
    #[schema(minimum = 1)]
    pub user_id: i64,
    #[schema(minimum = 1, maximum = 4_294_967_295_i64)]
    pub quantity: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductCreated {
    pub product_id: Uuid,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeSaleCreated {
    pub time_sale_id: Uuid,
    pub product_id: Uuid,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub time_sale_id: Uuid,
    pub user_id: i64,
    pub quantity: i64,
    pub unit_price: i64,
    pub total_price: i64,
    pub status: OrderStatus,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCanceled {
    pub order_id: Uuid,
    pub time_sale_id: Uuid,
    pub status: OrderStatus,
}

impl Commands {
    /// Creates a product (admin).
    pub async fn create_product(
        &self,
        call: &Call,
        input: CreateProduct,
    ) -> Result<Written<ProductCreated>, CommandError> {
        call.caller.require_admin()?;
        let spec = ProductSpec::new(
            Text::parse(&input.name, "name")?,
            Money::parse_positive(input.price, "price")?,
            Text::parse_optional(&input.description, "description")?,
        )?;
        let product_id = self.new_id();
        let command = ProductCommand::CreateProduct {
            spec,
            now: Utc::now(),
        };
        self.write(
            &self.products,
            product_id,
            call,
            creating("CreateProduct", command),
            move |_, _| Some(ProductCreated { product_id }),
        )
        .await
    }

    /// Opens a flash sale of a product (admin). The product's price goes into the command:
    /// the time sale never reads another aggregate.
    pub async fn create_time_sale(
        &self,
        call: &Call,
        input: CreateTimeSale,
    ) -> Result<Written<TimeSaleCreated>, CommandError> {
        call.caller.require_admin()?;
        let discount_price = Money::parse(input.discount_price, "discountPrice")?;
        let quantity = Quantity::parse(input.quantity, "quantity")?;
        let per_user_limit = input
            .per_user_limit
            .map(|l| Quantity::parse(l, "perUserLimit"))
            .transpose()?;
        let product_id = input.product_id;
        if !self.lookup.exists(product_id, "product").await? {
            return Err(DomainError::ProductNotFound.into());
        }
        let price = self
            .products
            .read(product_id, |p: &Product| p.spec().map(|s| s.price))
            .await?
            .ok_or(DomainError::ProductNotFound)?;
        let spec = TimeSaleSpec::new(
            product_id,
            price,
            discount_price,
            quantity,
            input.start_at,
            input.end_at,
            per_user_limit,
        )?;
        let time_sale_id = self.new_id();
        let command = TimeSaleCommand::CreateTimeSale {
            spec,
            now: Utc::now(),
        };
        self.write(
            &self.time_sales,
            time_sale_id,
            call,
            creating("CreateTimeSale", command),
            move |_, _| {
                Some(TimeSaleCreated {
                    time_sale_id,
                    product_id,
                })
            },
        )
        .await
    }

    /// Orders from a flash sale: never oversold, whatever the concurrency.
    pub async fn place_order(
        &self,
        call: &Call,
        input: PlaceOrder,
    ) -> Result<Written<OrderPlaced>, CommandError> {
        call.caller.require_user(input.user_id)?;
        let time_sale_id = input.time_sale_id;
        if !self.lookup.exists(time_sale_id, "timesale").await? {
            return Err(DomainError::TimeSaleNotFound.into());
        }
        let command = TimeSaleCommand::PlaceOrder {
            order_id: Uuid::new_v4(),
            user_id: UserId::parse(input.user_id, "userId")?,
            quantity: Quantity::parse(input.quantity, "quantity")?,
            now: Utc::now(),
        };
        if let Some(answer) = self
            .routed(time_sale_id, call, || Routed::PlaceOrder(input))
            .await
        {
            return answer;
        }
        self.write(
            &self.time_sales,
            time_sale_id,
            call,
            creating("PlaceOrder", command),
            move |_, events| match events {
                [TimeSaleEvent::OrderPlaced {
                    order_id,
                    user_id,
                    quantity,
                    unit_price,
                    total_price,
                    ..
                }] => Some(OrderPlaced {
                    order_id: *order_id,
                    time_sale_id,
                    user_id: user_id.get(),
                    quantity: i64::from(quantity.get()),
                    unit_price: unit_price.get(),
                    total_price: total_price.get(),
                    status: OrderStatus::Created,
                }),
                _ => None,
            },
        )
        .await
    }

    /// Cancels an order; its units go back to the sale.
    pub async fn cancel_order(
        &self,
        call: &Call,
        order_id: Uuid,
    ) -> Result<Written<OrderCanceled>, CommandError> {
        let time_sale_id = self.lookup.stream_of(order_id, "timesale", "order").await?;
        if let Some(answer) = self
            .routed(time_sale_id, call, || Routed::CancelOrder { order_id })
            .await
        {
            return answer;
        }
        let command = TimeSaleCommand::CancelOrder {
            order_id,
            acting_user: call.acting(),
            now: Utc::now(),
        };
        self.write(
            &self.time_sales,
            time_sale_id,
            call,
            changing("CancelOrder", command),
            move |_, _| {
                Some(OrderCanceled {
                    order_id,
                    time_sale_id,
                    status: OrderStatus::Canceled,
                })
            },
        )
        .await
    }
}
