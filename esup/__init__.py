"""esup: the umbrella command (`esup config check`, `esup explain`, ...)."""
