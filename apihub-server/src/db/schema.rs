//! The diesel schema, one definition for both backends (see `migrations/`).

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        email -> Nullable<Text>,
        password_hash -> Text,
        role -> Text,
        status -> Text,
        token_balance -> BigInt,
        total_recharged -> BigInt,
        total_consumed -> BigInt,
        discount_ppm -> Integer,
        token_version -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        reserved -> BigInt,
    }
}

diesel::table! {
    api_keys (id) {
        id -> BigInt,
        user_id -> BigInt,
        public_id -> Text,
        secret_hash -> Text,
        last4 -> Text,
        name -> Text,
        status -> Text,
        expires_at -> Nullable<BigInt>,
        rate_limit -> Nullable<Integer>,
        rate_limit_day -> Nullable<Integer>,
        token_limit -> Nullable<BigInt>,
        quota_limit -> Nullable<BigInt>,
        remaining_calls -> Nullable<BigInt>,
        allowed_models -> Text,
        discount_ppm -> Integer,
        batch_id -> Nullable<Text>,
        tokens_used -> BigInt,
        quota_used -> BigInt,
        calls_total -> BigInt,
        calls_succeeded -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        tokens_reserved -> BigInt,
        quota_reserved -> BigInt,
        calls_reserved -> BigInt,
        imported -> Bool,
    }
}

diesel::table! {
    transactions (id) {
        id -> BigInt,
        user_id -> BigInt,
        tx_type -> Text,
        amount -> BigInt,
        balance_before -> BigInt,
        balance_after -> BigInt,
        order_no -> Nullable<Text>,
        description -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    usage_logs (id) {
        id -> BigInt,
        request_id -> Text,
        user_id -> BigInt,
        key_id -> BigInt,
        model -> Text,
        endpoint -> Text,
        stream -> Bool,
        prompt_tokens -> BigInt,
        completion_tokens -> BigInt,
        cached_tokens -> BigInt,
        raw_cost -> BigInt,
        user_discount_ppm -> Integer,
        key_discount_ppm -> Integer,
        charged -> BigInt,
        status -> Integer,
        upstream_latency_ms -> BigInt,
        usage_source -> Text,
        created_at -> BigInt,
        overage -> BigInt,
        route_id -> Nullable<BigInt>,
        channel -> Nullable<Text>,
        attempts -> Integer,
        cost -> Nullable<BigInt>,
        first_byte_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    channels (id) {
        id -> BigInt,
        name -> Text,
        base_url -> Text,
        api_key -> Nullable<Text>,
        dialects -> Text,
        models -> Text,
        aliases -> Text,
        priority -> Integer,
        weight -> Integer,
        enabled -> Bool,
        timeout_secs -> Nullable<Integer>,
        created_at -> BigInt,
        updated_at -> BigInt,
        cost_prices -> Text,
        default_cost_price -> Nullable<Text>,
    }
}

diesel::table! {
    reservations (id) {
        id -> BigInt,
        user_id -> BigInt,
        key_id -> BigInt,
        request_id -> Text,
        amount -> BigInt,
        tokens -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    model_prices (model) {
        model -> Text,
        input_price -> BigInt,
        output_price -> BigInt,
        cache_read_price -> Nullable<BigInt>,
        cache_write_price -> Nullable<BigInt>,
        per_request_price -> Nullable<BigInt>,
        per_image_price -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    redemption_codes (id) {
        id -> BigInt,
        code -> Text,
        amount -> BigInt,
        name -> Text,
        expires_at -> Nullable<BigInt>,
        status -> Text,
        batch_id -> Text,
        created_by -> BigInt,
        redeemed_by -> Nullable<BigInt>,
        redeemed_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    recharge_orders (id) {
        id -> BigInt,
        out_trade_no -> Text,
        user_id -> BigInt,
        amount -> BigInt,
        money -> BigInt,
        payment_type -> Text,
        status -> Text,
        trade_no -> Nullable<Text>,
        completed_by -> Nullable<BigInt>,
        note -> Nullable<Text>,
        created_at -> BigInt,
        paid_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    credit_batches (node_id, first_seq) {
        node_id -> Text,
        first_seq -> BigInt,
        last_seq -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    credit_leases (id) {
        id -> BigInt,
        node_id -> Text,
        user_id -> BigInt,
        key_id -> Nullable<BigInt>,
        amount -> BigInt,
        tokens -> BigInt,
        calls -> BigInt,
        expires_at -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    metered_routes (id) {
        id -> BigInt,
        name -> Text,
        path -> Text,
        prefix -> Bool,
        methods -> Text,
        upstream_url -> Text,
        upstream_key -> Nullable<Text>,
        upstream_key_header -> Text,
        price_per_call -> BigInt,
        price_per_unit -> Nullable<BigInt>,
        units_pointer -> Nullable<Text>,
        max_units -> BigInt,
        key_field -> Nullable<Text>,
        model_pointer -> Nullable<Text>,
        success_statuses -> Text,
        timeout_secs -> Integer,
        allow_stream -> Bool,
        enabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    budgets (id) {
        id -> BigInt,
        user_id -> Nullable<BigInt>,
        key_id -> Nullable<BigInt>,
        period -> Text,
        credit_limit -> Nullable<BigInt>,
        token_limit -> Nullable<BigInt>,
        call_limit -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    budget_windows (budget_id, window_start) {
        budget_id -> BigInt,
        window_start -> BigInt,
        window_end -> BigInt,
        credit_used -> BigInt,
        tokens_used -> BigInt,
        calls_used -> BigInt,
        credit_reserved -> BigInt,
        tokens_reserved -> BigInt,
        calls_reserved -> BigInt,
    }
}

diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(transactions -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    api_keys,
    transactions,
    usage_logs,
    reservations,
    metered_routes,
    channels,
    budgets,
    budget_windows
);
