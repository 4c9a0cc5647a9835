"""A local Chargebee (API v2, Product Catalog 2.0) that the official ``chargebee`` SDK talks to."""
