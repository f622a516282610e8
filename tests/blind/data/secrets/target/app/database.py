"""Where the shop's data lives."""

PRIMARY = 'postgres://app:PaiYV6oEgH03Zq@db.internal:5432/shop'
REPORTING = "postgresql://report:p%234WmnytgA%2Fx@replica.internal/shop"
CACHE = "redis://:p#tmh7vaV18@cache.internal:6379/0"
MIRROR = "https://app:pa/tTb2iE3LO@mirror.internal/pkgs"
TIMEOUT_SECONDS = 30
CLONE = "https://ghp_LcpdRTQp7Z7403t79r30djF9vAlHfNIPhRPl@github.com/shop/shop.git"
