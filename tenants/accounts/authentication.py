"""API authentication by tenants.accounts.models.ApiToken."""
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from tenants.accounts.models import ApiToken, hash_token


class ApiTokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, looked up by the key's hash in the request's schema:
    a token of another tenant is unknown here, like a wrong, expired or ended one."""

    def authenticate_credentials(self, key):
        token = (ApiToken.objects.select_related("user")
                 .filter(key_hash=hash_token(key), expires_at__gt=timezone.now(), user__is_active=True).first())
        if token is None:
            raise exceptions.AuthenticationFailed(_("The API token is invalid or has expired."))
        return token.user, token
