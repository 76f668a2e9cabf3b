from django.urls import path

from notifications.api import views

app_name = "api"
urlpatterns = [
    path("events/", views.EventCreateView.as_view(), name="events"),
    path("events/batch/", views.EventBatchView.as_view(), name="events-batch"),
    path("messages/<int:pk>/", views.MessageDetailView.as_view(), name="message"),
    path("messages/<int:pk>/cancel/", views.MessageCancelView.as_view(), name="message-cancel"),
    path("event-types/", views.EventTypeListView.as_view(), name="event-types"),
]
