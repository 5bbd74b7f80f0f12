"""(H2 fills this module.)"""

# Staff pages, under /outreach/ (outreach.urls).
urlpatterns = []
# Pages for residents and their families (no sign-in), under /r/ (outreach.urls_residents).
resident_urlpatterns = []
