#!/usr/bin/env bash
# A short walk through the command API: a coupon campaign, points, a flash sale, a checkout
# hold that expires. Prints each request and the answer. Needs a running command-api (./dev run starts one). Signs in as the
# shop would (ADR 11): an admin sets up campaigns and sales, users claim, spend and order for
# themselves, the checkout service grants points; tokens from promo-token.
set -euo pipefail
API=${API:-http://127.0.0.1:8080}
QUERY=${QUERY:-http://127.0.0.1:8081}
token() { "${PROMO_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}/promo-token" --role "$1" --sub "$2" --ttl 15m; }
ADMIN=$(token admin demo)
SHOP=$(token service checkout)
AS=$ADMIN

# POST as $AS (an admin unless told: AS=$(token user 1) post …).
post() {
  local path=$1 body=$2
  printf '\n→ POST %s %s\n' "$path" "$body" >&2
  local answer
  answer=$(curl -sS -X POST "$API$path" -H "authorization: Bearer $AS" -H 'content-type: application/json' \
    -d "$body")
  # Shown on stderr (not with tee /dev/stderr: that reopens, and truncates, a log file).
  printf '%s\n' "$answer" >&2
  printf '%s\n' "$answer"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# A query that waits until the projections reached the write at position $2.
get() {
  local path=$1 position=$2
  printf '\n← GET %s (X-Min-Position: %s)\n' "$path" "$position" >&2
  curl -sS "$QUERY$path" -H "authorization: Bearer $AS" -H "X-Min-Position: $position" >&2
  echo >&2
}

start=$(date -u -d '-1 minute' +%FT%TZ)
end=$(date -u -d '+1 day' +%FT%TZ)

echo "== coupons: a campaign of 2, issued to users 1 and 2; user 3 finds it exhausted" >&2
policy=$(post /api/v1/coupon-policies "{\"title\":\"Winter sale\",\"totalQuantity\":2,\"startTime\":\"$start\",\"endTime\":\"$end\",\"discountType\":\"PERCENTAGE\",\"discountValue\":10,\"minimumOrderAmount\":10000,\"maximumDiscountAmount\":5000}" | field policyId)
coupon=$(AS=$(token user 1) post /api/v1/coupons/issue "{\"policyId\":\"$policy\",\"userId\":1}" | field couponId)
AS=$(token user 2) post /api/v1/coupons/issue "{\"policyId\":\"$policy\",\"userId\":2}" >/dev/null
AS=$(token user 3) post /api/v1/coupons/issue "{\"policyId\":\"$policy\",\"userId\":3}" >/dev/null
echo "== user 2 may not use user 1's coupon (403 NOT_OWNER); user 1 may" >&2
AS=$(token user 2) post "/api/v1/coupons/$coupon/use" '{"orderId":"ORD-1000","orderAmount":42000}' >/dev/null
used=$(AS=$(token user 1) post "/api/v1/coupons/$coupon/use" '{"orderId":"ORD-1001","orderAmount":42000}' | field position)
get "/api/v1/coupons/$coupon" "$used"
get "/api/v1/coupon-policies/$policy" "$used"

echo "== points: earn 1,000, spend 300, a retry with the same Idempotency-Key changes nothing" >&2
earned=$(AS=$SHOP post /api/v1/points/earn '{"userId":1,"amount":1000,"description":"welcome"}' | field position)
get /api/v1/points/users/1/balance "$earned"
printf "\n→ POST /api/v1/points/use twice with one Idempotency-Key\n" >&2
for _ in 1 2; do
  curl -sS -X POST "$API/api/v1/points/use" -H "authorization: Bearer $(token user 1)" -H 'content-type: application/json' \
    -H "Idempotency-Key: demo-use-1-$policy" -d '{"userId":1,"amount":300,"description":"checkout"}' >&2
  echo >&2
done

echo "== flash sale: 1 unit; the second buyer finds it sold out" >&2
product=$(post /api/v1/products '{"name":"Noise-cancelling headphones","price":300000}' | field productId)
sale=$(post /api/v1/time-sales "{\"productId\":\"$product\",\"discountPrice\":199000,\"quantity\":1,\"startAt\":\"$start\",\"endAt\":\"$end\"}" | field timeSaleId)
ordered=$(AS=$(token user 1) post /api/v1/orders "{\"timeSaleId\":\"$sale\",\"userId\":1,\"quantity\":1}" | field position)
AS=$(token user 2) post /api/v1/orders "{\"timeSaleId\":\"$sale\",\"userId\":2,\"quantity\":1}" >/dev/null
get "/api/v1/time-sales/$sale" "$ordered"
get /api/v1/points/users/1/history "$ordered"

echo "== a checkout hold: user 3 holds the last unit for 5 s; user 4 finds it sold out; the hold expires by itself and user 4's order goes through" >&2
sale=$(post /api/v1/time-sales "{\"productId\":\"$product\",\"discountPrice\":199000,\"quantity\":1,\"startAt\":\"$start\",\"endAt\":\"$end\"}" | field timeSaleId)
hold=$(AS=$(token user 3) post /api/v1/reservations "{\"timeSaleId\":\"$sale\",\"orderId\":\"CHK-3\",\"userId\":3,\"quantity\":1,\"ttlSeconds\":5}")
get "/api/v1/time-sales/$sale" "$(echo "$hold" | field position)"
AS=$(token user 4) post /api/v1/orders "{\"timeSaleId\":\"$sale\",\"userId\":4,\"quantity\":1}" >/dev/null
sleep 6
get "/api/v1/reservations/$(echo "$hold" | field reservationId)" 0
ordered=$(AS=$(token user 4) post /api/v1/orders "{\"timeSaleId\":\"$sale\",\"userId\":4,\"quantity\":1}" | field position)
get "/api/v1/time-sales/$sale" "$ordered"

echo "== replay-tools: the read models equal a projection of the event log" >&2
"${PROMO_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}/replay-tools" verify >&2
