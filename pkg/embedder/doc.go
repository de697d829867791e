// Package embedder turns texts into vectors through configurable providers.
//
// A Provider serves one model: an OpenAI-compatible HTTP endpoint (package
// openai), a local Model2Vec static model (package model2vec), or the
// deterministic feature-hashing embedder (package hashing, wrapped by Hashing).
// A Router puts providers behind one Embed call: each provider gets its own
// circuit breaker, requests without a model walk the configured fallback order
// past providers whose circuit is open or that fail, results are cached per
// (model, dimensions, sha256(text)) in a kv.Store, and everything is measured
// with Prometheus metrics.
//
// Vectors of different models are not comparable, so every answer names the
// model that produced it.
package embedder
