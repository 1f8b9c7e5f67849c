-- Self-registered accounts take user ids from 10^12 up (ADR 11). Below that are the ids the
-- shop issues itself, which its services already act for without an account here: were the
-- seventh sign-up to become user 7, it would read and spend that customer's coupons and points.
ALTER TABLE accounts ALTER COLUMN user_id SET START WITH 1000000000000;
ALTER TABLE accounts ALTER COLUMN user_id RESTART WITH 1000000000000;
