from django.contrib.auth import logout
from django.shortcuts import redirect
from django.urls import reverse

ALLOWED_WHILE_CHANGING_PASSWORD = ("accounts:password_change", "accounts:password_change_done", "accounts:logout")


class AccountMiddleware:
    """A session is valid only on the schema it was created on; a user holding a
    one-time password must choose a new one before anything else."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if user.is_authenticated:
            if request.session.get("schema") != request.tenant.schema_name:
                logout(request)
                return redirect(reverse("accounts:login", urlconf=request.urlconf))
            if user.must_change_password:
                allowed = {reverse(name, urlconf=request.urlconf) for name in ALLOWED_WHILE_CHANGING_PASSWORD}
                if request.path not in allowed and not request.path.startswith("/i18n/"):
                    return redirect(reverse("accounts:password_change", urlconf=request.urlconf))
        return self.get_response(request)
