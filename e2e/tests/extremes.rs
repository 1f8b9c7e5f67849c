//! Generated extreme-but-valid commands (issue 12): texts at their longest in every script,
//! times at the edges of the accepted range, amounts and quantities at their largest. Every
//! one passes the edge or is refused with a 4xx; none may make an event that the published
//! schemas, the projector or an outside consumer rejects. The command API checks each event
//! against its schema before appending it (debug builds); here the projector must park
//! nothing, `verify` must pass, every read must answer, and every Kafka message must match the
//! contract.
#![allow(clippy::unwrap_used)]

use e2e::System;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use schemas::ContractValidator;
use serde_json::{json, Value};

/// Pieces of text from many scripts and of every awkward kind a shop's users type.
const PIECES: &[&str] = &[
    "a",
    "Z",
    "7",
    " ",
    "\t",
    "\n",
    "é",
    "ß",
    "ç",
    "Ω",
    "Ж",
    "ש",
    "ع",
    "中",
    "日本",
    "한",
    "ไทย",
    "हि",
    "🎧",
    "👩🏽‍💻",
    "🇰🇷",
    "e\u{301}",
    "\u{200d}",
    "\u{feff}",
    "\u{202e}",
    "'",
    "\"",
    "\\",
    "<script>",
    "%00",
    "{}",
    "--",
    ";",
    "$1",
    "\u{fffd}",
    "\u{10ffff}",
];

/// Text of exactly `chars` characters (after trimming), not blank.
fn text(rng: &mut StdRng, chars: usize) -> String {
    let mut out: Vec<char> = vec!['x'];
    while out.len() < chars {
        let piece = PIECES[rng.random_range(0..PIECES.len())];
        out.extend(piece.chars());
    }
    out.truncate(chars);
    *out.last_mut().unwrap() = 'y';
    out.into_iter().collect()
}

fn pick<T: Copy>(rng: &mut StdRng, values: &[T]) -> T {
    values[rng.random_range(0..values.len())]
}

#[tokio::test]
async fn extreme_but_valid_commands_make_events_every_reader_accepts() {
    let seed: u64 = std::env::var("EXTREMES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("EXTREMES_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let system = System::start().await;
    let earliest = "1970-01-01T00:00:00Z";
    let latest = "9998-12-31T23:59:59.999999Z";
    let now = chrono::Utc::now();
    let open = (now - chrono::Duration::hours(1)).to_rfc3339();
    let later = (now + chrono::Duration::days(30)).to_rfc3339();
    let big = [1_i64, 2, 999_999_999, i64::MAX / 2, i64::MAX - 1, i64::MAX];
    let quantities = [1_i64, 2, 65_535, 4_294_967_294, 4_294_967_295];
    let mut answers: Vec<(String, StatusCode, Value)> = Vec::new();
    let mut post = async |path: &str, body: Value| -> Value {
        let answer = system.post(path, body.clone()).await;
        answers.push((path.to_owned(), answer.status, body));
        answer.body
    };

    let mut policies = vec![];
    let mut products = vec![];
    for round in 0..12 {
        let (start, end) = match round % 3 {
            0 => (earliest.to_owned(), latest.to_owned()),
            1 => (open.clone(), latest.to_owned()),
            _ => (earliest.to_owned(), later.clone()),
        };
        let percentage = rng.random_bool(0.5);
        let title_len = pick(&mut rng, &[1, 2, 999, 1000]);
        let description_len = pick(&mut rng, &[0, 1, 1000]);
        let description = if description_len == 0 {
            String::new()
        } else {
            text(&mut rng, description_len)
        };
        let policy = post(
            "/api/v1/coupon-policies",
            json!({ "title": text(&mut rng, title_len), "description": description,
                    "totalQuantity": pick(&mut rng, &quantities), "startTime": start, "endTime": end,
                    "discountType": if percentage { "PERCENTAGE" } else { "FIXED_AMOUNT" },
                    "discountValue": if percentage { pick(&mut rng, &[1, 50, 100]) } else { pick(&mut rng, &big) },
                    "minimumOrderAmount": pick(&mut rng, &[0, 1, i64::MAX]),
                    "maximumDiscountAmount": pick(&mut rng, &[0, 1, i64::MAX]) }),
        )
        .await;
        if let Some(id) = policy["policyId"].as_str() {
            policies.push(id.to_owned());
        }
        let price = pick(&mut rng, &big[1..]);
        let name_len = pick(&mut rng, &[1, 1000]);
        let product = post(
            "/api/v1/products",
            json!({ "name": text(&mut rng, name_len), "price": price,
                    "description": text(&mut rng, 1000) }),
        )
        .await;
        if let Some(id) = product["productId"].as_str() {
            products.push((id.to_owned(), price));
        }
    }
    let mut sales = vec![];
    for (product, price) in &products {
        let sale = post(
            "/api/v1/time-sales",
            json!({ "productId": product, "discountPrice": pick(&mut rng, &[1, price / 2, price - 1]),
                    "quantity": pick(&mut rng, &quantities), "startAt": pick(&mut rng, &[earliest, open.as_str()]),
                    "endAt": pick(&mut rng, &[latest, later.as_str()]),
                    "perUserLimit": pick(&mut rng, &[None, Some(1), Some(4_294_967_295_i64)]) }),
        )
        .await;
        if let Some(id) = sale["timeSaleId"].as_str() {
            sales.push(id.to_owned());
        }
    }
    let users = [1_i64, 2, i64::MAX];
    for user in users {
        for amount in [i64::MAX - 1, 1, i64::MAX] {
            post(
                "/api/v1/points/earn",
                json!({ "userId": user, "amount": amount, "description": text(&mut rng, 1000) }),
            )
            .await;
        }
        post(
            "/api/v1/points/use",
            json!({ "userId": user, "amount": i64::MAX, "description": text(&mut rng, 1),
                    "orderId": text(&mut rng, 128) }),
        )
        .await;
    }
    let mut coupons = vec![];
    for policy in &policies {
        for user in users {
            let issued = post(
                "/api/v1/coupons/issue",
                json!({ "policyId": policy, "userId": user }),
            )
            .await;
            if let Some(id) = issued["couponId"].as_str() {
                coupons.push(id.to_owned());
            }
        }
    }
    for coupon in &coupons {
        post(
            &format!("/api/v1/coupons/{coupon}/use"),
            json!({ "orderId": text(&mut rng, 128), "orderAmount": pick(&mut rng, &[0, 1, i64::MAX]) }),
        )
        .await;
        post(&format!("/api/v1/coupons/{coupon}/cancel"), json!({})).await;
        if rng.random_bool(0.5) {
            post(&format!("/api/v1/coupons/{coupon}/revoke"), json!({})).await;
        }
    }
    for sale in &sales {
        for user in users {
            let order = post(
                "/api/v1/orders",
                json!({ "timeSaleId": sale, "userId": user, "quantity": pick(&mut rng, &quantities) }),
            )
            .await;
            if let Some(id) = order["orderId"].as_str() {
                post(&format!("/api/v1/orders/{id}/cancel"), json!({})).await;
            }
        }
    }

    let server_errors: Vec<_> = answers
        .iter()
        .filter(|(_, status, _)| status.is_server_error())
        .collect();
    assert!(server_errors.is_empty(), "seed {seed}: {server_errors:#?}");
    let accepted = answers.iter().filter(|(_, s, _)| s.is_success()).count();
    assert!(
        accepted > 40,
        "seed {seed}: the extremes are mostly valid ({accepted} of {})",
        answers.len()
    );

    // The projector parked nothing and the read models equal the log.
    let head = system.projected().await;
    let (code, parked) = system.replay_tools(&["parked"]);
    assert_eq!(code, 0);
    assert!(
        parked.contains("0 parked event(s)"),
        "seed {seed}: {parked}"
    );
    let (code, verified) = system.replay_tools(&["verify"]);
    assert_eq!(code, 0, "seed {seed}: {verified}");
    // Every read of what was made answers.
    for path in policies
        .iter()
        .map(|p| format!("/api/v1/coupon-policies/{p}"))
        .chain(coupons.iter().map(|c| format!("/api/v1/coupons/{c}")))
        .chain(
            coupons
                .iter()
                .map(|c| format!("/api/v1/coupons/{c}/quote?orderAmount=9223372036854775807")),
        )
        .chain(sales.iter().map(|s| format!("/api/v1/time-sales/{s}")))
        .chain(
            users
                .iter()
                .map(|u| format!("/api/v1/points/users/{u}/history?limit=100")),
        )
        .chain([
            "/api/v1/time-sales?limit=100".to_owned(),
            "/api/v1/coupon-policies?limit=100".to_owned(),
        ])
    {
        let read = system.get(&path, Some(head)).await;
        assert_eq!(
            read.status,
            StatusCode::OK,
            "seed {seed}: {path}: {}",
            read.body
        );
    }
    // An outside consumer's view: every message matches the contract.
    let contract = ContractValidator::new().unwrap();
    let messages = system.consume(head as usize).await;
    for (_, message) in &messages {
        contract
            .validate_envelope(message)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}: {message}"));
    }
    system.stop().await;
}
