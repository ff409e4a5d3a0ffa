export * from './batch-event.js';
export * from './event-signature.js';
export * from './delivery-backoff.js';
export { listEvents, type EventDelivery, type EventFilter } from './event-store.js';
export { EventPublisher, eventJobId, type EventSink, type EventJobData } from './event-publisher.js';
export { EventDeliveryWorker, type EventDeliveryOptions, type DeliveryResult } from './event-delivery-worker.js';
export { postEvent, DEFAULT_DELIVERY_TIMEOUT_MS, type PostOutcome } from './post-event.js';
