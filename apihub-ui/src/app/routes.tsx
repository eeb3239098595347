// Every page, loaded on demand so each route's code is its own chunk.
import { lazy, Suspense } from 'react';
import { Route, Routes } from 'react-router';
import { AppLayout } from './AppLayout';
import { RequireAdmin, RequireAuth } from './guards';
import { PageSpinner } from './PageSpinner';

const Login = lazy(() => import('../pages/login'));
const Register = lazy(() => import('../pages/register'));
const Dashboard = lazy(() => import('../pages/dashboard'));
const Keys = lazy(() => import('../pages/keys'));
const Transactions = lazy(() => import('../pages/transactions'));
const Requests = lazy(() => import('../pages/requests'));
const Usage = lazy(() => import('../pages/usage'));
const KeyUsage = lazy(() => import('../pages/key-usage'));
const Playground = lazy(() => import('../pages/playground'));
const UserUsage = lazy(() => import('../pages/admin/user-usage'));
const Models = lazy(() => import('../pages/models'));
const Quickstart = lazy(() => import('../pages/quickstart'));
const Recharge = lazy(() => import('../pages/recharge'));
const RechargeResult = lazy(() => import('../pages/recharge-result'));
const AdminUsers = lazy(() => import('../pages/admin/users'));
const AdminKeys = lazy(() => import('../pages/admin/keys'));
const AdminPrices = lazy(() => import('../pages/admin/prices'));
const AdminRoutes = lazy(() => import('../pages/admin/routes'));
const AdminChannels = lazy(() => import('../pages/admin/channels'));
const AdminStats = lazy(() => import('../pages/admin/stats'));
const AdminRedemptionCodes = lazy(() => import('../pages/admin/redemption-codes'));
const AdminRechargeOrders = lazy(() => import('../pages/admin/recharge-orders'));
const NotFound = lazy(() => import('../pages/not-found'));

export function AppRoutes() {
  return (
    <Suspense fallback={<PageSpinner />}>
      <Routes>
        <Route path="/login" element={<Login />} />
        <Route path="/register" element={<Register />} />
        <Route
          element={
            <RequireAuth>
              <AppLayout />
            </RequireAuth>
          }
        >
          <Route index element={<Dashboard />} />
          <Route path="keys" element={<Keys />} />
          <Route path="keys/:id/usage" element={<KeyUsage />} />
          <Route path="usage" element={<Usage />} />
          <Route path="playground" element={<Playground />} />
          <Route path="transactions" element={<Transactions />} />
          <Route path="requests" element={<Requests />} />
          <Route path="models" element={<Models />} />
          <Route path="quickstart" element={<Quickstart />} />
          <Route path="recharge" element={<Recharge />} />
          <Route path="recharge/result" element={<RechargeResult />} />
          <Route path="admin/users" element={<RequireAdmin><AdminUsers /></RequireAdmin>} />
          <Route path="admin/users/:id/usage" element={<RequireAdmin><UserUsage /></RequireAdmin>} />
          <Route path="admin/keys" element={<RequireAdmin><AdminKeys /></RequireAdmin>} />
          <Route path="admin/prices" element={<RequireAdmin><AdminPrices /></RequireAdmin>} />
          <Route path="admin/routes" element={<RequireAdmin><AdminRoutes /></RequireAdmin>} />
          <Route path="admin/channels" element={<RequireAdmin><AdminChannels /></RequireAdmin>} />
          <Route path="admin/stats" element={<RequireAdmin><AdminStats /></RequireAdmin>} />
          <Route path="admin/requests" element={<RequireAdmin><Requests admin /></RequireAdmin>} />
          <Route path="admin/redemption-codes" element={<RequireAdmin><AdminRedemptionCodes /></RequireAdmin>} />
          <Route path="admin/recharge-orders" element={<RequireAdmin><AdminRechargeOrders /></RequireAdmin>} />
          <Route path="*" element={<NotFound />} />
        </Route>
      </Routes>
    </Suspense>
  );
}
