import React, { useEffect, useState } from "react";

type Invoice = {
  id: string;
  customer: string;
  totalCents: number;
  notes: string;
};

type Props = {
  customerId: string;
};

export function InvoiceTable({ customerId }: Props) {
  const [invoices, setInvoices] = useState<Invoice[]>([]);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    fetch(`/api/invoices?customer=${customerId}`)
      .then((response) => response.json())
      .then(setInvoices)
      .catch((err) => setError(String(err)));
  }, []);

  if (error) {
    return <p className="error">{error}</p>;
  }

  return (
    <table>
      <tbody>
        {invoices.map((invoice) => (
          <tr>
            <td>{invoice.customer}</td>
            <td>{(invoice.totalCents / 100).toFixed(2)}</td>
            <td dangerouslySetInnerHTML={{ __html: invoice.notes }} />
          </tr>
        ))}
      </tbody>
    </table>
  );
}
