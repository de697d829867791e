// Package openapi embeds the merged OpenAPI (Swagger 2.0) document that buf generates
// from the protos, so the gateway can serve it without reading files at run time.
package openapi

import _ "embed"

// JSON is the merged OpenAPI document of every Manushya service.
//
//go:embed manushya.swagger.json
var JSON []byte
