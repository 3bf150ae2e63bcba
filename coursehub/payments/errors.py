"""What the payment webhook can answer with besides success."""

from __future__ import annotations

from coursehub.core.errors import Conflict, NotFound, Unauthorized, ValidationFailed


class InvalidSignature(Unauthorized):
    """The body's HMAC does not match: not from the gateway, or altered on the way."""

    code = "invalid_signature"
    title = "The webhook signature is missing or wrong"


class InvalidPaymentEvent(ValidationFailed):
    code = "invalid_payment_event"
    title = "The payment event is not valid"


class PaymentAmountMismatch(ValidationFailed):
    code = "payment_amount_mismatch"
    title = "The payment's amount is not the order's"


class PaymentCurrencyMismatch(ValidationFailed):
    code = "payment_currency_mismatch"
    title = "The payment's currency is not the order's"


class OrderAlreadyPaid(Conflict):
    code = "order_already_paid"
    title = "The order is already paid"


class PaymentSimulatorDisabled(NotFound):
    """The simulator is off (settings.payment_simulator): as if the route did not exist."""

    code = "not_found"
    title = "Not found"


class OrderNotRefundable(Conflict):
    code = "order_not_refundable"
    title = "Only a completed, paid order can be refunded"


class NoRefundDue(Conflict):
    code = "no_refund_due"
    title = "The order has no late capture waiting for a refund"
