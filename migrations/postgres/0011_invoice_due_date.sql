-- When an invoice sent for payment (collection by invoice, `send_invoice`) is due, as Stripe says;
-- null for invoices Stripe charges automatically, where Stripe itself leaves it null.
ALTER TABLE invoices ADD COLUMN due_date TIMESTAMPTZ;
