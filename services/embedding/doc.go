// Package embedding is the embedding service: EmbeddingService.Embed and
// ListModels over the providers of pkg/embedder.
//
// The configured providers (OpenAI-compatible APIs, local Model2Vec models, the
// hashing embedder) are put in fallback order behind one router with a circuit
// breaker each and a vector cache in the KV store; with no configuration the
// hashing embedder at 384 dimensions serves alone. Requests are validated
// before any provider is called (each bad text named as texts[i]); answers name
// the provider and model that served and how many texts came from the cache.
// Token usage is summed per tenant, identity and model and written to the
// service's outbox as embedding.completed events, which the usage service
// meters.
//
// # Configuration
//
// Providers are a JSON list (see ProviderConfig for every key). An Ollama model
// as the default, the hashing embedder as its fallback, and a local Model2Vec
// model that serves only requests naming it:
//
//	[
//	  {"name": "ollama", "type": "openai_compatible", "base_url": "http://127.0.0.1:11434/v1",
//	   "model": "nomic-embed-text", "dimensions": 768, "timeout": "10s"},
//	  {"name": "hashing", "type": "hashing", "dimensions": 768},
//	  {"name": "potion", "type": "local", "path": "/models/potion-base-8M", "model": "potion-base-8M"}
//	]
//
// with the fallback order ["ollama", "hashing"]. A hosted API takes its key
// from the environment: "api_key_env": "OPENAI_API_KEY". Vectors of a fallback
// model are not comparable with the default model's: the answer names the
// model, so stores can keep it with each vector and re-embed when the default
// provider is back. Give the fallback the default's dimensions when the vectors
// share one index column.
package embedding
