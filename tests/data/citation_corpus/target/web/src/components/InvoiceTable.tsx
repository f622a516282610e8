import React from "react";

type Invoice = { id: string; total: number };

export function InvoiceTable({ invoices }: { invoices: Invoice[] }) {
  return (
    <table>
      <tbody>
        {invoices.map((invoice) => (
          <tr key={invoice.id} dangerouslySetInnerHTML={{ __html: invoice.id }} />
        ))}
      </tbody>
    </table>
  );
}
