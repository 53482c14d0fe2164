"""Small neural-network building blocks shared by encoders and objectives."""
