"""Pages for residents and their families, who have no account: answer links, the
voice call's TwiML, the LINE account-link page, notices. Under /r/ on the tenant's host;
each is reached by a token or a provider's signed request, never by a session."""
from outreach import views_answers, views_board, views_reach, views_voice

app_name = "residents"

urlpatterns = [
    *views_answers.resident_urlpatterns,
    *views_voice.resident_urlpatterns,
    *views_reach.resident_urlpatterns,
    *views_board.resident_urlpatterns,
]
