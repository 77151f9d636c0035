//! The synthetic short-video world: items with latent topics, users with drifting
//! latent preferences, a ground-truth choice and engagement model, and the true
//! expected reward of any session for any user.
