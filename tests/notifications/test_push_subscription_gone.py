"""A push service answering 404/410 means the browser unsubscribed: the subscription is
forgotten through notifications.actions.do_forget_webpush_subscription, by compare-and-set."""
from notifications.actions import do_forget_webpush_subscription, do_set_webpush_subscription
from tenants.context import tenant_scope
from tests.notifications.helpers import attempts, notify


def test_a_push_subscription_gone_leaves_the_channels_too(
    volunteer_a, fake_providers, push_receiver, django_capture_on_commit_callbacks
):
    with tenant_scope("tenant_a"):
        preference = do_set_webpush_subscription(user=volunteer_a, subscription=push_receiver.subscription)
    fake_providers.fail(1, status=404, path="/push/")
    notification, _ = notify(django_capture_on_commit_callbacks, volunteer_a)
    assert attempts(notification) == [("webpush", 1, False), ("email", 1, True)]
    with tenant_scope("tenant_a"):
        preference.refresh_from_db()
    assert (preference.webpush_subscription, preference.channels) == (None, ["email"])


def test_a_phone_that_subscribed_again_keeps_its_new_subscription(volunteer_a, fake_providers, push_receiver):
    old_endpoint = push_receiver.subscription["endpoint"]
    renewed = {**push_receiver.subscription, "endpoint": old_endpoint.replace("phone-1", "phone-2")}
    with tenant_scope("tenant_a"):
        stale = do_set_webpush_subscription(user=volunteer_a, subscription=push_receiver.subscription)
        do_set_webpush_subscription(user=volunteer_a, subscription=renewed)
        assert do_forget_webpush_subscription(preference=stale, endpoint=old_endpoint) is False
        stale.refresh_from_db()
    assert stale.webpush_subscription == renewed and stale.channels == ["webpush", "email"]


def test_forgetting_in_another_tenant_changes_nothing_here(volunteer_a, outsider_b, fake_providers, push_receiver):
    endpoint = push_receiver.subscription["endpoint"]
    with tenant_scope("tenant_a"):
        preference = do_set_webpush_subscription(user=volunteer_a, subscription=push_receiver.subscription)
    with tenant_scope("tenant_b"):
        assert do_forget_webpush_subscription(preference=preference, endpoint=endpoint) is False
    with tenant_scope("tenant_a"):
        preference.refresh_from_db()
    assert preference.webpush_subscription == push_receiver.subscription
