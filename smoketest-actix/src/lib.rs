//! actix-web adapter: see issue 4.
