"""Apps that know nothing of the controller but two URLs, and what drives them."""
