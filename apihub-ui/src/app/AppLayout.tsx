// The dashboard frame: side menu, header with the language switch and the user menu.
import {
  ApiOutlined,
  BarChartOutlined,
  ClusterOutlined,
  CodeOutlined,
  DashboardOutlined,
  DollarOutlined,
  DownOutlined,
  GiftOutlined,
  KeyOutlined,
  LockOutlined,
  LineChartOutlined,
  LogoutOutlined,
  MenuOutlined,
  MessageOutlined,
  NodeIndexOutlined,
  OrderedListOutlined,
  ProfileOutlined,
  ShoppingCartOutlined,
  ShoppingOutlined,
  TagsOutlined,
  TeamOutlined,
  TransactionOutlined,
} from '@ant-design/icons';
import { Button, Drawer, Dropdown, Grid, Layout, Menu, Segmented, Space, Tag, theme, Typography, type MenuProps } from 'antd';
import { Suspense, useState, type ReactNode } from 'react';
import { Outlet, useLocation, useNavigate } from 'react-router';
import { session } from '../api';
import { LOCALES, useI18n, type Locale, type MessageKey } from '../i18n';
import { ChangePasswordModal } from './ChangePasswordModal';
import { PageSpinner } from './PageSpinner';
import { useMe } from './useSession';

interface NavItem {
  path: string;
  label: MessageKey;
  icon: ReactNode;
}

const USER_NAV: NavItem[] = [
  { path: '/', label: 'nav.dashboard', icon: <DashboardOutlined /> },
  { path: '/keys', label: 'nav.keys', icon: <KeyOutlined /> },
  { path: '/usage', label: 'nav.usage', icon: <LineChartOutlined /> },
  { path: '/requests', label: 'nav.requests', icon: <ProfileOutlined /> },
  { path: '/transactions', label: 'nav.transactions', icon: <TransactionOutlined /> },
  { path: '/playground', label: 'nav.playground', icon: <MessageOutlined /> },
  { path: '/models', label: 'nav.models', icon: <TagsOutlined /> },
  { path: '/quickstart', label: 'nav.quickstart', icon: <CodeOutlined /> },
  { path: '/recharge', label: 'nav.recharge', icon: <ShoppingOutlined /> },
];

const ADMIN_NAV: NavItem[] = [
  { path: '/admin/users', label: 'nav.adminUsers', icon: <TeamOutlined /> },
  { path: '/admin/keys', label: 'nav.adminKeys', icon: <ApiOutlined /> },
  { path: '/admin/prices', label: 'nav.adminPrices', icon: <DollarOutlined /> },
  { path: '/admin/channels', label: 'nav.adminChannels', icon: <ClusterOutlined /> },
  { path: '/admin/routes', label: 'nav.adminRoutes', icon: <NodeIndexOutlined /> },
  { path: '/admin/stats', label: 'nav.adminStats', icon: <BarChartOutlined /> },
  { path: '/admin/requests', label: 'nav.adminRequests', icon: <OrderedListOutlined /> },
  { path: '/admin/redemption-codes', label: 'nav.adminCodes', icon: <GiftOutlined /> },
  { path: '/admin/recharge-orders', label: 'nav.adminOrders', icon: <ShoppingCartOutlined /> },
];

/** The menu entry that owns a path: the longest matching prefix. */
function selectedKey(pathname: string): string {
  const all = [...USER_NAV, ...ADMIN_NAV].map((n) => n.path);
  return (
    all
      .filter((p) => (p === '/' ? pathname === '/' : pathname === p || pathname.startsWith(`${p}/`)))
      .sort((a, b) => b.length - a.length)[0] ?? pathname
  );
}

export function AppLayout() {
  const { t, locale, setLocale } = useI18n();
  const me = useMe();
  const navigate = useNavigate();
  const location = useLocation();
  const [collapsed, setCollapsed] = useState(false);
  const [drawerOpen, setDrawerOpen] = useState(false);
  const { token } = theme.useToken();
  // Below `md` (768 px) the menu is a drawer opened from the header, so pages get the whole width.
  const screens = Grid.useBreakpoint();
  const phone = screens.md === false;
  const [passwordOpen, setPasswordOpen] = useState(false);
  const isAdmin = me.data?.role === 'admin';

  const item = (n: NavItem) => ({ key: n.path, icon: n.icon, label: t(n.label) });
  const menuItems: MenuProps['items'] = [
    ...USER_NAV.map(item),
    ...(isAdmin ? [{ type: 'group' as const, key: 'admin', label: t('nav.admin'), children: ADMIN_NAV.map(item) }] : []),
  ];

  const userMenu: MenuProps['items'] = [
    { key: 'password', icon: <LockOutlined />, label: t('header.changePassword') },
    { type: 'divider' },
    { key: 'logout', icon: <LogoutOutlined />, label: t('header.logout') },
  ];
  const menu = (after?: () => void) => (
    <Menu
      theme="dark"
      mode="inline"
      selectedKeys={[selectedKey(location.pathname)]}
      items={menuItems}
      onClick={({ key }) => {
        navigate(key);
        after?.();
      }}
    />
  );
  const onUserMenu: MenuProps['onClick'] = ({ key }) => {
    if (key === 'password') setPasswordOpen(true);
    if (key === 'logout') session.end('logout');
  };

  return (
    <Layout style={{ minHeight: '100vh' }}>
      {phone ? (
        <Drawer
          placement="left"
          open={drawerOpen}
          onClose={() => setDrawerOpen(false)}
          width={240}
          closable={false}
          styles={{ body: { padding: 0, background: '#001529' } }}
          data-testid="nav-drawer"
        >
          <div className="logo">APIHub</div>
          {menu(() => setDrawerOpen(false))}
        </Drawer>
      ) : (
        <Layout.Sider collapsible collapsed={collapsed} onCollapse={setCollapsed} breakpoint="lg" theme="dark">
          <div className="logo">{collapsed ? 'AH' : 'APIHub'}</div>
          {menu()}
        </Layout.Sider>
      )}
      <Layout style={{ minWidth: 0 }}>
        <Layout.Header
          className="app-header"
          style={{ background: token.colorBgContainer, borderBottom: `1px solid ${token.colorBorderSecondary}` }}
        >
          {phone ? (
            <Button
              type="text"
              icon={<MenuOutlined />}
              aria-label={t('nav.menu')}
              data-testid="nav-toggle"
              onClick={() => setDrawerOpen(true)}
              style={{ marginRight: 'auto' }}
            />
          ) : null}
          <Space size={phone ? 'small' : 'middle'}>
            <Segmented<Locale>
              size="small"
              value={locale}
              options={LOCALES}
              onChange={setLocale}
              aria-label={t('header.language')}
            />
            <Dropdown menu={{ items: userMenu, onClick: onUserMenu }} trigger={['click']}>
              <Button type="text" data-testid="user-menu">
                <Space>
                  <Typography.Text strong data-testid="current-username">{me.data?.username ?? '…'}</Typography.Text>
                  {isAdmin ? <Tag color="gold">{t('role.admin')}</Tag> : null}
                  <DownOutlined />
                </Space>
              </Button>
            </Dropdown>
          </Space>
        </Layout.Header>
        <Layout.Content className="app-content">
          <Suspense fallback={<PageSpinner />}>
            <Outlet />
          </Suspense>
        </Layout.Content>
      </Layout>
      <ChangePasswordModal open={passwordOpen} onClose={() => setPasswordOpen(false)} />
    </Layout>
  );
}
