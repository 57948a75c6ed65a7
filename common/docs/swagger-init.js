// Swagger UI's start, in a file of its own: /docs's Content-Security-Policy allows scripts
// from this service only, never inline ones. The paths are common/openapi.py's DOCS_PREFIX.
// persistAuthorization stays off: a pasted token (an admin's too) is not kept in
// localStorage, it leaves with the tab.
window.onload = function () {
    window.ui = SwaggerUIBundle({
        url: "/docs/openapi.json",
        configUrl: "/docs/swagger-config",
        dom_id: "#openapi",
        deepLinking: true,
        persistAuthorization: false,
        validatorUrl: null,
        oauth2RedirectUrl: window.location.origin + "/docs/oauth2-redirect.html",
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        plugins: [SwaggerUIBundle.plugins.DownloadUrl],
        layout: "StandaloneLayout"
    });
};
