// The API reference, rendered from /openapi.json by the pinned Swagger UI in ./vendor.
// Read-only: no "Try it out", so nobody is invited to paste a key into this page (it runs
// sandboxed, in an origin of its own: see public/_headers).
// eslint-disable-next-line no-undef
SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, supportedSubmitMethods: [] });
