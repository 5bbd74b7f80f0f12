from django.contrib.auth import views as auth_views
from django.urls import path

from tenants.accounts import views

app_name = "accounts"

# Shared by the public (operator) and the tenant URL confs.
sign_in_patterns = [
    path("login/", views.SignInView.as_view(), name="login"),
    path("logout/", views.SignOutView.as_view(), name="logout"),
    path("password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]

password_reset_patterns = [
    path("password/reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password/reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password/reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("password/reset/complete/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]

tenant_patterns = [
    *sign_in_patterns,
    *password_reset_patterns,
    path("users/", views.user_list, name="users"),
    path("users/<int:user_id>/deactivate/", views.set_user_active, {"active": False}, name="deactivate_user"),
    path("users/<int:user_id>/reactivate/", views.set_user_active, {"active": True}, name="reactivate_user"),
    path("invitations/<int:invitation_id>/revoke/", views.revoke_invitation, name="revoke_invitation"),
    path("invitations/accept/<str:token>/", views.accept_invitation, name="accept_invitation"),
]
