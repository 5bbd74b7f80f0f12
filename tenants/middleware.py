from django.conf import settings
from django.db import connection
from django.http import HttpResponseNotFound
from django.http.request import split_domain_port
from django.template.loader import render_to_string

from tenants.context import current_schema, get_tenant_for_host, is_public


class TenantMiddleware:
    """Resolve the tenant from the Host header (cached) and route to its URLs.

    Replaces django-tenants' TenantMainMiddleware to avoid a public-schema query on
    every request. An unknown or deactivated host gets 404 and touches no tenant.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        hostname, _port = split_domain_port(request.get_host())
        tenant = get_tenant_for_host(hostname)
        if tenant is None:
            return HttpResponseNotFound(render_to_string("404_host.html", request=None))
        request.tenant = tenant
        connection.set_tenant(tenant)
        request.urlconf = settings.PUBLIC_SCHEMA_URLCONF if is_public(tenant) else settings.ROOT_URLCONF
        token = current_schema.set(tenant.schema_name)
        try:
            return self.get_response(request)
        finally:
            current_schema.reset(token)
